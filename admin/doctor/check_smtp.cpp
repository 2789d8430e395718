// doctor check group "smtp": each outgoing SMTP server (the installation default and each
// active connector's, deduplicated) accepts TCP and greets with 220.
#include <algorithm>
#include <map>

#include "doctor/doctor.hpp"
#include "doctor/smtp_dialog.hpp"
#include "global/smtp_route.hpp"

namespace mx::admin::doctor {
namespace {

void probe_smtp(doctor_state& d, std::map<std::string, std::string>& seen, const smtp_route& route,
                const std::string& who) {
    auto key = route.host + ":" + std::to_string(route.port);
    if (auto it = seen.find(key); it != seen.end()) {
        it->second += ", " + who;
        return;
    }
    seen[key] = who;
    int timeout_ms = std::clamp(route.timeout_seconds, 1, 10) * 1000;
    auto port = std::to_string(route.port);
    try {
        if (route.security == tls_mode::tls) {
            (void)util::connect_tcp(route.host, port, std::chrono::milliseconds(timeout_ms));
            d.r.ok("smtp", who + ": " + key + " accepts TCP (implicit TLS; full test: " +
                               d.cmd_prefix() + " smtp-test)");
            return;
        }
        smtp_dialog s(route.host, port, timeout_ms);
        s.quit();
        const auto& banner = s.greeting();
        if (reply_code(banner) == "220")
            d.r.ok("smtp", who + ": " + key + " greets: " + banner);
        else
            d.r.fail("smtp", who + ": " + key + " greets with '" + banner + "'",
                     "the server refuses us; check with " + d.cmd_prefix() + " smtp-test");
    } catch (const std::exception& e) {
        d.r.fail("smtp", who + ": " + key + " unreachable: " + e.what(),
                 "bounces wait in the spool until it answers; check host/port with " +
                     d.cmd_prefix() + " smtp-test");
    }
}

}  // namespace

void check_smtp(doctor_state& d) {
    std::map<std::string, std::string> seen;  // host:port -> who uses it
    if (!d.cfg().smtp.host.empty())
        probe_smtp(d, seen, default_smtp_route(d.cfg()), "installation default");
    if (!d.have_store) return;
    for (const auto& c : d.connectors) {
        if (!c.active) continue;
        probe_smtp(d, seen, resolve_smtp_route(d.cfg(), c), "connector " + c.name);
    }
}

}  // namespace mx::admin::doctor
