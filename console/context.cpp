// console context: [console] settings and the console's ops::env (store, secrets, shm).
#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

#include "console.hpp"
#include "global/config_reader.hpp"

namespace mx::console {

bool console_settings::loopback() const {
    if (host == "localhost" || host == "::1") return true;
    in_addr a{};
    if (::inet_pton(AF_INET, host.c_str(), &a) == 1) return (ntohl(a.s_addr) >> 24) == 127;
    return false;
}

console_settings read_settings(const config& cfg) {
    console_settings s;
    config_reader r(cfg, "console");
    auto where = [&](const char* key) { return r.where(key); };
    if (r.has("listen")) {
        std::string l = r.string("listen", "");
        auto colon = l.rfind(':');
        int port = -1;
        if (colon != std::string::npos) {
            auto [p, ec] = std::from_chars(l.data() + colon + 1, l.data() + l.size(), port);
            if (ec != std::errc() || p != l.data() + l.size()) port = -1;
        }
        if (colon == std::string::npos || colon == 0 || port < 1 || port > 65535)
            r.fail("listen", "must be HOST:PORT (e.g. 127.0.0.1:8025), got '" + l + "'");
        s.host = l.substr(0, colon);
        if (s.host.size() > 2 && s.host.front() == '[' && s.host.back() == ']')
            s.host = s.host.substr(1, s.host.size() - 2);
        s.port = port;
    }
    s.tls_cert = r.path("tls_cert", s.tls_cert).string();
    s.tls_key = r.path("tls_key", s.tls_key).string();
    s.sample_seconds = static_cast<int>(r.integer("sample_seconds", s.sample_seconds, 1, 3600));
    s.postfix_log = r.path("postfix_log", s.postfix_log).string();
    s.log_max_bytes = static_cast<std::size_t>(r.integer(
                          "log_max_mb", static_cast<std::int64_t>(s.log_max_bytes >> 20), 1, 1024))
                      << 20;
    s.doctor_seconds = static_cast<int>(r.integer("doctor_seconds", s.doctor_seconds, 10, 86400));
    s.mxctl = r.path("mxctl", s.mxctl).string();
    if (s.tls_cert.empty() != s.tls_key.empty())
        throw config_error(where("tls_cert") + " and tls_key go together: set both or neither");
    if (!s.loopback() && s.tls_cert.empty())
        throw config_error(where("listen") + " is not a loopback address (" + s.host +
                           "): set [console] tls_cert and tls_key, or listen on 127.0.0.1");
    return s;
}

store& console_env::open_store() {
    std::lock_guard lock(open_mu_);
    if (!store_) {
        store_ = store::open(cfg_, false);
        if (auto* s = shm()) store_->attach(s);
    }
    return *store_;
}

secret_store& console_env::secrets() {
    std::lock_guard lock(open_mu_);
    if (!secrets_) secrets_ = secret_store::open(cfg_, false);
    return *secrets_;
}

shm_state* console_env::shm() {
    std::call_once(shm_once_, [this] {  // request threads and the sampler may race here
        try {
            shm_ = shm_state::attach(cfg_);
        } catch (const std::exception&) {
            // No counters and no generation bump: the daemons still notice at their next check.
        }
    });
    return shm_ ? &*shm_ : nullptr;
}

std::shared_ptr<const mailbox_index> console_env::mailboxes() {
    auto v = open_store_read_only().read();
    auto gen = v.generation();
    std::lock_guard lock(index_mu_);
    if (index_ && index_->generation == gen) return index_;
    auto idx = std::make_shared<mailbox_index>();
    idx->generation = gen;
    v.for_each_mailbox([&](const mailbox& m) {
        ++idx->per_connector[m.connector];
        idx->boxes.push_back(m);
        return true;
    });
    idx->build_search();
    index_ = idx;
    return index_;
}

void mailbox_index::build_search() {
    text.clear();
    starts.clear();
    starts.reserve(boxes.size());
    for (const auto& m : boxes) {
        starts.push_back(static_cast<std::uint32_t>(text.size()));
        for (char c : m.address)
            text.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
        text.push_back('\n');  // never inside an address: a match cannot span two
    }
}

std::vector<std::size_t> mailbox_index::search(std::string_view needle, const std::string& conn,
                                               std::size_t skip, std::size_t limit,
                                               std::size_t& total, bool* capped) const {
    std::vector<std::size_t> out;
    total = 0;
    // Counting every match of "@big-domain" would cost a scan of all of them on every page:
    // past count_max (and the page asked for) the scan stops and the count says "more than".
    const std::size_t stop_at = std::max(skip + limit, count_max) + 1;
    if (capped) *capped = false;
    auto take = [&](std::size_t i) {
        if (!conn.empty() && boxes[i].connector != conn) return true;
        if (total >= skip && out.size() < limit) out.push_back(i);
        if (++total < stop_at) return true;
        --total;
        if (capped) *capped = true;
        return false;
    };
    if (needle.empty() || needle.find('\n') != std::string_view::npos) {
        if (needle.empty())
            for (std::size_t i = 0; i < boxes.size() && take(i); ++i) {
            }
        return out;
    }
    const char* base = text.data();
    const char* end = base + text.size();
    std::size_t i = 0;  // hits come in text order: the box index only moves forward
    for (const char* p = base; p < end;) {
        auto* hit = static_cast<const char*>(
            ::memmem(p, static_cast<std::size_t>(end - p), needle.data(), needle.size()));
        if (!hit) break;
        auto off = static_cast<std::uint32_t>(hit - base);
        while (i + 1 < starts.size() && starts[i + 1] <= off) ++i;
        if (!take(i)) break;
        // Next line: one box counts once however often it matches.
        p = i + 1 < starts.size() ? base + starts[i + 1] : end;
    }
    return out;
}

}  // namespace mx::console
