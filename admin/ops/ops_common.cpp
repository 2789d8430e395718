// ops common: the store-write entry point and the argument rules both front ends share.
#include <ctime>
#include <iostream>
#include <variant>

#include "global/address.hpp"
#include "global/cluster.hpp"
#include "ops.hpp"
#include "target_http.hpp"

namespace mx::ops {

std::uint64_t write(env& e, const std::function<void(store_tx&)>& fn,
                    const secret_changes* secrets) {
    if (auto c = cluster::cluster_of(e.cfg())) return cluster_write(e, *c, fn, secrets);
    // The store commits atomically and publishes the generation into shared memory (attached
    // by the caller's env).
    auto gen = e.open_store().write(fn);
    if (secrets) {
        for (auto& [k, v] : secrets->set) {
            if (v.empty())
                e.secrets().remove(k);
            else
                e.secrets().set(k, v);
        }
        for (auto& p : secrets->remove_prefixes) e.secrets().remove_prefix(p);
    }
    return gen;
}

std::string normalize_mailbox_arg(const std::string& arg) {
    if (!arg.empty() && arg.front() == '@') {
        std::string why;
        auto d = normalize_domain(arg.substr(1), &why);
        if (!d) throw op_error("invalid catch-all '" + arg + "': " + why);
        return "@" + *d;
    }
    auto parsed = parse_address(arg);
    if (auto* err = std::get_if<address_error>(&parsed))
        throw op_error("invalid address '" + arg + "': " + err->reason +
                       " (expected local@domain, or @domain for a catch-all)");
    return std::get<address>(parsed).str();
}

void check_target_spec(const config& cfg, const std::string& spec) {
    if (spec.rfind("webhook:", 0) != 0) return;
    try {
        (void)importer::parse_webhook_spec(std::string_view(spec).substr(8),
                                           config_reader(cfg, "targets"));
    } catch (const std::exception& e) {
        throw op_error(std::string("target: ") + e.what());  // the text names no secret
    }
}

std::string read_secret_value(const std::string& v) {
    if (v != "-") return v;
    std::string line;
    std::getline(std::cin, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

std::string when(std::int64_t t) {
    if (t <= 0) return "-";
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
    return buf;
}

std::string json_str(const nlohmann::json& j, const char* key) {
    if (!j.is_object()) return "";
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return "";
    return it->is_string() ? it->get<std::string>() : it->dump();
}

check_result check(env& e, const std::string& address) {
    auto policy = check_policy::from(e.cfg());
    std::string arg = address;
    if (arg.empty() || arg.front() != '<') arg = "<" + arg + ">";
    check_result r;
    try {
        r = check_recipient(e.open_store_read_only(), policy, arg, true);
    } catch (const std::exception& ex) {
        // Same as the milter: no usable store is a temporary failure, never "user unknown".
        r.verdict = decision::tempfail;
        r.cause = check_cause::store_error;
        r.code = "451";
        r.dsn = "4.3.0";
        r.text = arg + ": Temporary lookup failure";
        r.reason = ex.what();
    }
    return r;
}

}  // namespace mx::ops
