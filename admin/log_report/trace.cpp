// trace: see trace.hpp.
#include "trace.hpp"

#include <algorithm>
#include <iomanip>

#include "render.hpp"

namespace mx::logreport {

namespace {

constexpr std::size_t max_session_lines = 64;
constexpr std::size_t max_message_lines = 2000;  // a message deferred for days stays bounded

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
        if (x != y) return false;
    }
    return true;
}

std::string_view status_name(delivery_status s) {
    switch (s) {
        case delivery_status::sent:
            return "sent";
        case delivery_status::deferred:
            return "deferred";
        case delivery_status::bounced:
            return "bounced";
        case delivery_status::expired:
            return "expired";
        case delivery_status::other:
            return "other";
    }
    return "other";
}

void add_step(std::vector<std::string>& path, std::string step) {
    // Repeated deferrals on every queue run collapse into one step with a count.
    if (!path.empty()) {
        std::string& last = path.back();
        if (last == step) {
            last += " (x2)";
            return;
        }
        const std::size_t x = last.rfind(" (x");
        if (x != std::string::npos && last.compare(0, x, step) == 0 && last.back() == ')') {
            const int n = std::atoi(last.c_str() + x + 3);
            last = step + " (x" + std::to_string(n + 1) + ")";
            return;
        }
    }
    path.push_back(std::move(step));
}

}  // namespace

tracer::tracer(std::string query) : query_(std::move(query)) {
    if (query_.size() >= 2 && query_.front() == '<' && query_.back() == '>')
        query_ = query_.substr(1, query_.size() - 2);
    query_lower_ = lower(query_);
}

bool tracer::matches_address(std::string_view a) const {
    return !a.empty() && iequals(a, query_lower_);
}

void tracer::summarize(trace_result& r, const event& ev) {
    switch (ev.kind) {
        case event_kind::client:
            r.client = std::string(ev.client_host) + "[" + std::string(ev.client_ip) + "]";
            add_step(r.path, "client " + r.client);
            break;
        case event_kind::pickup:
            r.from = std::string(ev.from);
            add_step(r.path, "local submission (pickup) from=<" + r.from + ">");
            break;
        case event_kind::message_id:
            r.message_id = std::string(ev.message_id);
            break;
        case event_kind::queued:
            if (r.from.empty() ||
                std::none_of(r.path.begin(), r.path.end(),
                             [](const std::string& s) { return s.rfind("queued", 0) == 0; })) {
                r.from = std::string(ev.from);
                add_step(r.path, "queued from=<" + r.from + "> size=" + std::to_string(ev.size) +
                                     " nrcpt=" + std::to_string(ev.nrcpt));
            }
            break;
        case event_kind::reject:
            add_step(r.path, std::string(reject_kind_name(ev.rkind)) + " at " +
                                 std::string(ev.stage) + ": " + std::string(ev.reply));
            break;
        case event_kind::delivery: {
            std::string s = std::string(ev.to) + ": " + std::string(status_name(ev.status));
            if (!ev.relay.empty()) s += " via " + std::string(ev.relay);
            if (!ev.status_text.empty()) s += " (" + std::string(ev.status_text) + ")";
            add_step(r.path, std::move(s));
            break;
        }
        case event_kind::expired:
            add_step(r.path, "expired, returned to sender");
            break;
        case event_kind::notification:
            add_step(r.path, "notification to sender queued as " + std::string(ev.new_queue_id));
            break;
        case event_kind::removed:
            add_step(r.path, "removed from queue");
            break;
        case event_kind::import_result: {
            std::string s = "importer: " + std::string(ev.to) + ": ";
            switch (ev.outcome) {
                case import_outcome::imported:
                    s += "imported into mailbox " + std::string(ev.mailbox);
                    break;
                case import_outcome::failed:
                    s += "ImportFailed (" + std::string(ev.reply) + ")";
                    break;
                case import_outcome::deferred:
                    s += "import deferred (" + std::string(ev.reply) + ")";
                    break;
                case import_outcome::duplicate:
                    s += "duplicate, already imported";
                    break;
                case import_outcome::other:
                    s += "?";
                    break;
            }
            if (!ev.connector.empty()) s += " [connector " + std::string(ev.connector) + "]";
            add_step(r.path, std::move(s));
            break;
        }
        default:
            break;
    }
}

void tracer::close(const std::string& qid) {
    auto it = open_.find(qid);
    if (it == open_.end()) return;
    if (it->second.matched) {
        done_by_qid_[qid] = done_.size();
        done_.push_back(std::move(it->second.r));
    }
    open_.erase(it);
}

void tracer::add_import(const event& ev, trace_line tl) {
    // The importer works on the drop-folder file after Postfix delivered (and usually
    // removed) the message: join on the queue ID of that delivery, open or already closed.
    trace_result* r = nullptr;
    if (!ev.queue_id.empty()) {
        if (auto it = open_.find(ev.queue_id); it != open_.end()) {
            if (!it->second.matched)
                it->second.matched = matches_address(ev.to) || ev.message_id == query_;
            if (it->second.matched) r = &it->second.r;
        } else if (auto d = done_by_qid_.find(ev.queue_id); d != done_by_qid_.end()) {
            r = &done_[d->second];
        }
    }
    if (!r && (matches_address(ev.to) || (!ev.message_id.empty() && ev.message_id == query_) ||
               (!ev.queue_id.empty() && ev.queue_id == query_))) {
        // The Postfix side is not in this log (rotated away): report the import alone.
        trace_result alone;
        alone.queue_id = std::string(ev.queue_id);
        alone.message_id = std::string(ev.message_id);
        alone.closed = true;
        done_.push_back(std::move(alone));
        r = &done_.back();
    }
    if (!r) return;
    if (r->lines.size() < max_message_lines) r->lines.push_back(std::move(tl));
    summarize(*r, ev);
}

void tracer::add(const log_line& line, const event& ev) {
    trace_line tl{line.time, std::string(line.daemon), std::string(line.message)};
    if (ev.kind == event_kind::import_result) {
        add_import(ev, std::move(tl));
        return;
    }
    const bool smtpd = line.daemon == "smtpd" || line.daemon == "postscreen";

    if (ev.queue_id.empty()) {
        if (!smtpd || line.pid < 0) return;
        if (ev.kind == event_kind::connect) {
            auto& s = sessions_[line.pid];
            s.clear();
            session_client_[line.pid] =
                std::string(ev.client_host) + "[" + std::string(ev.client_ip) + "]";
        }
        auto& s = sessions_[line.pid];
        if (s.size() >= max_session_lines) s.pop_front();
        s.push_back(tl);
        if (ev.kind == event_kind::reject && (matches_address(ev.to) || matches_address(ev.from))) {
            trace_result r;
            r.client = session_client_[line.pid];
            r.from = std::string(ev.from);
            r.lines.assign(s.begin(), s.end());
            if (!r.client.empty()) r.path.push_back("client " + r.client);
            summarize(r, ev);
            r.closed = true;
            done_.push_back(std::move(r));
        }
        if (ev.kind == event_kind::disconnect) {
            sessions_.erase(line.pid);
            session_client_.erase(line.pid);
        }
        return;
    }

    const std::string qid(ev.queue_id);
    auto it = open_.find(qid);
    if ((ev.kind == event_kind::client || ev.kind == event_kind::pickup) && it != open_.end() &&
        !it->second.r.lines.empty()) {
        close(qid);  // queue ID reused: the old lifecycle ends here
        it = open_.end();
    }
    if (it == open_.end()) {
        it = open_.emplace(qid, open_msg{}).first;
        it->second.r.queue_id = qid;
        if (ev.kind == event_kind::client && smtpd && line.pid >= 0) {
            auto s = sessions_.find(line.pid);
            if (s != sessions_.end() && !s->second.empty() &&
                s->second.front().text.rfind("connect from ", 0) == 0)
                it->second.r.lines.push_back(s->second.front());
        }
    }
    open_msg& m = it->second;
    if (m.r.lines.size() < max_message_lines) m.r.lines.push_back(std::move(tl));
    if (!m.matched) {
        m.matched = qid == query_ || (!ev.message_id.empty() && ev.message_id == query_) ||
                    matches_address(ev.from) || matches_address(ev.to) ||
                    matches_address(ev.orig_to);
    }
    summarize(m.r, ev);
    if (ev.kind == event_kind::notification && m.matched && !ev.new_queue_id.empty() &&
        is_queue_id(ev.new_queue_id)) {
        auto& child = open_[std::string(ev.new_queue_id)];
        child.matched = true;
        child.r.queue_id = std::string(ev.new_queue_id);
        child.r.parent = qid;
    }
    if (ev.kind == event_kind::removed ||
        (ev.kind == event_kind::reject && ev.stage != "RCPT" &&
         (ev.rkind == reject_kind::reject || ev.rkind == reject_kind::milter_reject))) {
        // "removed", or the whole message refused after it had a queue ID (no "removed" then).
        m.r.closed = true;
        close(qid);
    }
}

std::vector<trace_result> tracer::finish() {
    for (auto& [qid, m] : open_)
        if (m.matched) done_.push_back(std::move(m.r));
    open_.clear();
    std::vector<trace_result> out = std::move(done_);
    done_.clear();
    std::stable_sort(out.begin(), out.end(), [](const trace_result& a, const trace_result& b) {
        const std::int64_t ta = a.lines.empty() ? 0 : a.lines.front().time;
        const std::int64_t tb = b.lines.empty() ? 0 : b.lines.front().time;
        return ta < tb;
    });
    return out;
}

void render_trace_text(const std::vector<trace_result>& results, std::ostream& out) {
    if (results.empty()) {
        out << "no message matches\n";
        return;
    }
    bool first = true;
    for (const auto& r : results) {
        if (!first) out << "\n";
        first = false;
        out << (r.queue_id.empty() ? std::string("Rejected transaction (no queue ID)")
                                   : "Message " + r.queue_id);
        if (!r.message_id.empty()) out << "  message-id=<" << printable(r.message_id) << ">";
        if (!r.parent.empty()) out << "  (notification about " << r.parent << ")";
        if (!r.closed) out << "  [still open at end of log]";
        out << "\n  path: ";
        for (std::size_t i = 0; i < r.path.size(); ++i)
            out << (i ? "\n        -> " : "") << printable(r.path[i]);
        out << "\n";
        for (const auto& l : r.lines)
            out << "  " << format_time(l.time) << "  " << std::left << std::setw(10)
                << printable(l.daemon) << printable(l.text) << "\n";
    }
}

nlohmann::json trace_json(const std::vector<trace_result>& results) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& r : results) {
        nlohmann::json lines = nlohmann::json::array();
        for (const auto& l : r.lines)
            lines.push_back({{"time", l.time}, {"daemon", l.daemon}, {"text", l.text}});
        a.push_back(
            {{"queue_id",
              r.queue_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.queue_id)},
             {"message_id", r.message_id},
             {"from", r.from},
             {"client", r.client},
             {"parent", r.parent.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.parent)},
             {"closed", r.closed},
             {"path", r.path},
             {"lines", lines}});
    }
    return a;
}

}  // namespace mx::logreport
