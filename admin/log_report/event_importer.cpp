// event_importer: mx-importer's own log lines ("imported", "failed", ...) as events (see
// event_parser.hpp), so log-report counts what happened after Postfix handed a message over.
#include "event_parser.hpp"
#include "event_scan.hpp"

namespace mx::logreport {

using namespace detail;

bool parse_importer_event(const log_line& line, event& ev) noexcept {
    ev = event{};
    sv m = line.message;
    if (!starts(m, "import ")) {
        ev.kind = event_kind::info;  // the importer's other chatter
        return true;
    }
    // Keys in the importer's fixed order; values end at the next space, except detail="..."
    // which comes after everything we read.
    std::size_t i = 7;
    while (i < m.size()) {
        const std::size_t eq = m.find('=', i);
        if (eq == npos) break;
        const sv key = m.substr(i, eq - i);
        if (key == "detail" || key == "file") break;
        sv rest = m.substr(eq + 1);
        sv value;
        std::size_t used;
        if (!rest.empty() && rest[0] == '<') {
            value = angle_value(rest, used);
        } else {
            used = rest.find(' ');
            if (used == npos) used = rest.size();
            value = rest.substr(0, used);
        }
        if (key == "connector")
            ev.connector = value;
        else if (key == "rcpt")
            ev.to = value;
        else if (key == "mailbox")
            ev.mailbox = value;
        else if (key == "msgid") {
            if (!value.empty() && value.front() == '<') value.remove_prefix(1);
            if (!value.empty() && value.back() == '>') value.remove_suffix(1);
            ev.message_id = value;
        } else if (key == "size")
            ev.size = to_int(value);
        else if (key == "queue_id")
            ev.queue_id = value;
        else if (key == "status")
            ev.dsn = value;
        else if (key == "reason")
            ev.reply = value;
        else if (key == "outcome") {
            if (value == "imported")
                ev.outcome = import_outcome::imported;
            else if (value == "failed")
                ev.outcome = import_outcome::failed;
            else if (value == "deferred")
                ev.outcome = import_outcome::deferred;
            else if (value == "duplicate")
                ev.outcome = import_outcome::duplicate;
        }
        i = eq + 1 + used;
        while (i < m.size() && m[i] == ' ') ++i;
    }
    if (ev.to.empty() || ev.outcome == import_outcome::other) return false;
    ev.kind = event_kind::import_result;
    return true;
}

}  // namespace mx::logreport
