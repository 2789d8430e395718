// libFuzzer target: one arbitrary byte string as a mail-log line through the header parser and,
// when that succeeds, the Postfix event parser and reject classification. Checks that every
// view the parsers hand out lies inside the input (or the parser's own JSON buffers) and that
// numbers stay in range; ASan/UBSan catch the rest.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "event_parser.hpp"
#include "line_parser.hpp"

namespace {

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() &&
                            part.data() + part.size() <= whole.data() + whole.size());
}

void check(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static mx::logreport::line_parser parser(1709294400);  // fixed "now": reproducible years
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    mx::logreport::log_line line;
    if (!parser.parse(in, line)) return 0;
    check(line.hour >= 0 && line.hour < 24);
    check(line.usec >= 0 && line.usec < 1000000);
    if (line.format != mx::logreport::line_format::journal_json) {
        for (auto v : {line.host, line.tag, line.syslog_name, line.daemon, line.message})
            check(inside(v, in));
    }
    check(inside(line.daemon, line.tag) && inside(line.syslog_name, line.tag));
    mx::logreport::event ev;
    if (mx::logreport::parse_event(line, ev)) {
        const std::string_view m = line.message;
        for (auto v : {ev.queue_id, ev.client_host, ev.client_ip, ev.counts, ev.stage, ev.reply,
                       ev.code, ev.helo, ev.from, ev.to, ev.dsn, ev.message_id, ev.orig_to,
                       ev.relay, ev.delays, ev.tls, ev.status_text, ev.new_queue_id})
            check(inside(v, m));
        (void)mx::logreport::classify_reject(ev);
    }
    // The importer's outcome lines share the mail log; its parser sees every line too.
    if (mx::logreport::parse_importer_event(line, ev)) {
        const std::string_view m = line.message;
        for (auto v :
             {ev.connector, ev.to, ev.mailbox, ev.message_id, ev.queue_id, ev.dsn, ev.reply})
            check(inside(v, m));
    }
    return 0;
}
