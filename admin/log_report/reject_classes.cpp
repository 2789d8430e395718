// reject_classes: why a reject happened (from its DSN and reply) and the names reports print
// for reject reasons and kinds (see event_parser.hpp).
#include "event_parser.hpp"

namespace mx::logreport {

reject_reason classify_reject(const event& ev) noexcept {
    const std::string_view d = ev.dsn;
    if (d == "5.1.1") return reject_reason::user_unknown;
    if (d == "4.2.1") return reject_reason::connector_inactive;
    if (d == "4.3.0") return reject_reason::store_error;
    if (d == "4.7.1" && ev.code == "451" && ev.rkind == reject_kind::milter_reject)
        return reject_reason::milter_unavailable;
    if (ev.reply.find("Relay access denied") != std::string_view::npos)
        return reject_reason::relay_denied;
    return reject_reason::other;
}

std::string_view reject_reason_name(reject_reason r) noexcept {
    switch (r) {
        case reject_reason::user_unknown:
            return "user_unknown";
        case reject_reason::connector_inactive:
            return "connector_inactive";
        case reject_reason::store_error:
            return "store_error";
        case reject_reason::milter_unavailable:
            return "milter_unavailable";
        case reject_reason::relay_denied:
            return "relay_denied";
        case reject_reason::other:
            return "other";
    }
    return "other";
}

std::string_view reject_kind_name(reject_kind k) noexcept {
    switch (k) {
        case reject_kind::reject:
            return "reject";
        case reject_kind::milter_reject:
            return "milter-reject";
        case reject_kind::reject_warning:
            return "reject_warning";
        case reject_kind::hold:
            return "hold";
        case reject_kind::discard:
            return "discard";
        case reject_kind::milter_hold:
            return "milter-hold";
        case reject_kind::milter_discard:
            return "milter-discard";
    }
    return "reject";
}

}  // namespace mx::logreport
