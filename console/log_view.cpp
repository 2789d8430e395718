// console log_view: the `mxctl log-report` analysis (admin/log_report: the same line parser,
// aggregator and JSON schema) of the end of the Postfix log named by [console] postfix_log.
//
// Promises: at most [console] log_max_mb are read (the file's tail, from the first whole line);
// one report is computed at a time and kept for a minute (the log grows all the time), so a
// reload storm costs one parse a minute. The domain -> connector map comes from the store.
// Security: the log's lines are hostile; they only reach the aggregator as bounded views and
// the page as escaped text (pages_log.cpp) or JSON (Chart.js draws labels as canvas text).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "aggregator.hpp"
#include "console.hpp"
#include "line_parser.hpp"
#include "render.hpp"

namespace mx::console {
namespace {

constexpr std::int64_t cache_seconds = 60;

struct fd_closer {
    int fd;
    ~fd_closer() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

nlohmann::json log_report_json(std::string_view text, const logreport::connector_map* connectors) {
    logreport::line_parser parser(static_cast<std::int64_t>(std::time(nullptr)));
    logreport::aggregator agg(logreport::report_filter{}, connectors);
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (!line.empty()) agg.add_line(line, parser);
    }
    agg.finish();
    logreport::render_options ro;
    ro.top = 10;
    return logreport::to_json(agg, ro);
}

logreport::connector_map store_connector_map(console_env& env) {
    logreport::connector_map m;
    auto v = env.open_store_read_only().read();
    for (const auto& c : v.connectors())
        for (const auto& d : c.domains) m.add(d, c.name);
    return m;
}

std::shared_ptr<const nlohmann::json> log_view::report() {
    if (file_.empty())
        throw std::runtime_error(
            "no Postfix log configured: set [console] postfix_log (e.g. /var/log/mail.log)");
    std::lock_guard lock(mu_);  // one parse at a time; the others wait for its result
    fd_closer f{::open(file_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
    if (f.fd < 0)
        throw std::runtime_error("cannot open " + file_ + ": " + std::strerror(errno) +
                                 " (the console's account must be able to read it)");
    struct stat st {};
    if (::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode))
        throw std::runtime_error(file_ + " is not a regular file");
    auto now = static_cast<std::int64_t>(std::time(nullptr));
    bool same_file = st.st_size == last_size_ && st.st_mtime == last_mtime_;
    if (last_ && (same_file || now - last_at_ < cache_seconds)) return last_;
    auto size = static_cast<std::size_t>(st.st_size);
    std::size_t from = size > max_bytes_ ? size - max_bytes_ : 0;
    std::string buf(size - from, '\0');
    std::size_t got = 0;
    while (got < buf.size()) {
        ssize_t n =
            ::pread(f.fd, buf.data() + got, buf.size() - got, static_cast<off_t>(from + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw std::runtime_error("cannot read " + file_ + ": " + std::strerror(errno));
        if (n == 0) break;  // truncated meanwhile
        got += static_cast<std::size_t>(n);
    }
    buf.resize(got);
    std::string_view text(buf);
    if (from > 0) {  // the first line is cut: it starts after the first newline
        auto nl = text.find('\n');
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    }
    if (auto last_nl = text.rfind('\n'); last_nl != std::string_view::npos)
        text = text.substr(0, last_nl + 1);  // a line still being written waits
    auto connectors = connectors_ ? connectors_() : logreport::connector_map{};
    auto j = std::make_shared<nlohmann::json>(log_report_json(text, &connectors));
    (*j)["read"] = {{"file", file_},
                    {"size", size},
                    {"from", from + static_cast<std::size_t>(text.data() - buf.data())},
                    {"bytes", text.size()},
                    {"time", now}};
    last_ = j;
    last_at_ = now;
    last_size_ = st.st_size;
    last_mtime_ = st.st_mtime;
    return last_;
}

}  // namespace mx::console
