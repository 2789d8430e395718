// ops mailbox: add, remove and search mailboxes — one store transaction per change.
#include <algorithm>
#include <cctype>

#include "ops.hpp"

namespace mx::ops {

mailbox add_mailbox(env& e, const std::string& address, const std::string& conn,
                    const std::string& target) {
    mailbox m;
    m.address = normalize_mailbox_arg(address);
    m.connector = conn;
    m.target = target;
    check_target_spec(e.cfg(), m.target);
    write(e, [&](store_tx& tx) { tx.add_mailbox(m); });
    return m;
}

std::string remove_mailbox(env& e, const std::string& address) {
    std::string key = normalize_mailbox_arg(address);
    secret_changes secrets;
    secrets.remove_prefixes = {"mailbox/" + key + "/"};
    write(
        e,
        [&](store_tx& tx) {
            if (!tx.remove_mailbox(key))
                throw op_error("no mailbox " + key + " (see: mxctl mailbox list)");
        },
        &secrets);
    return key;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

bool mailbox_matches(const mailbox& m, const std::string& lower_needle, const std::string& conn) {
    if (!conn.empty() && m.connector != conn) return false;
    // Keys are normalised (lower-case domain); the local part may keep its case.
    if (lower_needle.empty()) return true;
    // No copy per mailbox: searched 100k times per console request.
    auto it = std::search(
        m.address.begin(), m.address.end(), lower_needle.begin(), lower_needle.end(),
        [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
    return it != m.address.end();
}

std::vector<mailbox> find_mailboxes(store_view& v, const std::string& needle,
                                    const std::string& conn, std::size_t limit,
                                    std::size_t& total) {
    std::string n = lower(needle);
    std::vector<mailbox> out;
    total = 0;
    v.for_each_mailbox(
        [&](const mailbox& m) {
            if (!mailbox_matches(m, n, conn)) return true;
            ++total;
            if (out.size() < limit) out.push_back(m);
            return true;
        },
        conn);
    return out;
}

}  // namespace mx::ops
