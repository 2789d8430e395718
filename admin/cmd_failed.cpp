// mxctl failed list|show|retry|purge — the files in each connector's <drop>/ImportFailed —
// and mxctl import-status — what the importer's journal says about a file / message-id / queue id.
//
// retry moves the message into <drop>/.retry/ with one rename(2): exactly one retry wins even
// if two admins race, and the importer re-imports it once (recipients already imported are
// recognised by the journal; no second bounce is spooled). The reason file moves to
// ImportFailed/.retried/ so the history stays. purge deletes message and reason file.
// show also prints what an application would receive of the message (subject, addresses, the
// text a mail client shows, attachments): the importer's own JSON builder, run in its forked,
// resource-limited child, so a message that crashed the importer's converter cannot take
// mxctl down either.
// Security: IDs are file names inside ImportFailed; anything with '/' or a leading '.' is
// refused, so no argument can name a path outside that folder. Text from the message is
// stripped of terminal control characters before it is printed.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "global/journal.hpp"
#include "mxctl.hpp"
#include "target_health.hpp"

namespace mx::admin {
namespace {

using ops::when;

namespace fs = std::filesystem;

using ops::failed_entry;

std::vector<failed_entry> scan(mxctl_context& ctx, const std::string& only_connector) {
    return ops::scan_failed(ctx, only_connector);
}

std::string str(const nlohmann::json& j, const char* key) {
    return ops::json_str(j, key);
}

std::string bounce_state(const nlohmann::json& r) {
    auto it = r.find("bounce");
    if (it == r.end() || !it->is_object()) return "unknown";
    return str(*it, "state");
}

failed_entry find_one(mxctl_context& ctx, const std::string& arg) {
    return ops::find_failed(ctx, arg);
}

nlohmann::json entry_json(const failed_entry& e) {
    return ops::failed_json(e);
}

std::optional<nlohmann::json> message_content(const failed_entry& e, std::string& why) {
    return ops::failed_content(e, why);
}

// Printable on a terminal: C0/C1 controls (ESC sequences) and DEL become '?', except newline
// and tab; at most max_lines lines.
std::string terminal_text(std::string_view s, std::size_t max_lines, std::size_t& more) {
    std::string out;
    std::size_t lines = 0;
    more = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '\n') {
            if (++lines >= max_lines) {
                std::string_view rest = s.substr(i + 1);
                while (!rest.empty() && (rest.back() == '\n' || rest.back() == ' '))
                    rest.remove_suffix(1);
                if (!rest.empty())
                    more = 1 + static_cast<std::size_t>(std::count(rest.begin(), rest.end(), '\n'));
                break;
            }
            out += '\n';
        } else if (c == '\r') {
            continue;
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            out += '?';
        } else if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
                   static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
            out += '?';  // U+0080..U+009F: C1 controls (8-bit CSI)
            ++i;
        } else {
            out += static_cast<char>(c);
        }
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
}

std::string address_line(const nlohmann::json& list) {
    std::string out;
    if (!list.is_array()) return out;
    for (const auto& a : list) {
        std::string name = str(a, "name"), addr = str(a, "address");
        if (!out.empty()) out += ", ";
        out += name.empty() ? "<" + addr + ">" : name + " <" + addr + ">";
    }
    std::size_t more = 0;
    return terminal_text(out, 1, more);
}

void print_show(const failed_entry& e) {
    const auto& r = e.reason;
    auto line = [](const char* k, const std::string& v) {
        if (!v.empty())
            std::cout << std::left << std::setw(17) << (std::string(k) + ":") << v << "\n";
    };
    line("id", e.connector + ":" + e.file);
    line("message file", e.message_path().string());
    line("reason file", e.reason_path().string());
    line("connector", e.connector);
    line("failed at",
         when(r.value("failed_time", std::int64_t{0})) + " on " + str(r, "importer_host"));
    line("arrived", when(r.value("arrival_time", std::int64_t{0})));
    line("envelope sender", r.value("envelope_sender_known", false)
                                ? "<" + str(r, "envelope_sender") + ">"
                                : std::string("unknown"));
    line("envelope from", str(r, "envelope_source"));
    line("message-id", str(r, "message_id"));
    line("queue id", str(r, "queue_id"));
    line("from", str(r, "from"));
    line("subject", str(r, "subject"));
    line("size", str(r, "size"));
    if (auto it = r.find("recipients"); it != r.end() && it->is_array())
        for (const auto& rc : *it)
            line("recipient", "<" + str(rc, "recipient") + "> " + str(rc, "status") + " " +
                                  str(rc, "reason") + ": " + str(rc, "diagnostic"));
    if (auto it = r.find("bounce"); it != r.end() && it->is_object()) {
        std::string b = str(*it, "state");
        for (const char* k : {"job", "detail", "why", "time", "sent_to", "error"})
            if (!str(*it, k).empty()) b += std::string(", ") + k + " " + str(*it, k);
        line("bounce", b);
    } else {
        line("bounce", "unknown (no reason file)");
    }
    std::error_code ec;
    if (!fs::exists(e.message_path(), ec)) return;
    std::string why;
    auto c = message_content(e, why);
    std::cout << "\nmessage (as an application receives it):\n";
    if (!c) {
        line("content", "could not be converted: " + why);
        return;
    }
    std::size_t more = 0;
    line("subject", terminal_text(str(*c, "subject"), 1, more));
    for (const char* k : {"from", "to", "cc"})
        if (auto it = c->find(k); it != c->end()) line(k, address_line(*it));
    std::string text = str(*c, "text");
    if (!text.empty()) {
        std::string shown = terminal_text(text, 20, more);
        std::cout << "text:\n";
        std::istringstream in(shown);
        for (std::string l; std::getline(in, l);) std::cout << "  | " << l << "\n";
        if (more) std::cout << "  | ... (" << more << " more lines)\n";
    } else if (c->contains("text") && (*c)["text"].is_string()) {
        line("text", "(empty)");
    } else {
        line("text", "(none)");
    }
    std::string html = str(*c, "html");
    if (c->contains("html") && (*c)["html"].is_string())
        line("html", std::to_string(html.size()) + " bytes");
    if (auto it = c->find("attachments"); it != c->end() && it->is_array())
        for (const auto& a : *it) {
            std::string name = str(a, "filename");
            line("attachment",
                 terminal_text(name.empty() ? "(no name)" : name, 1, more) + " (" +
                     str(a, "content_type") + ", " + str(a, "size") + " bytes" +
                     (str(a, "disposition").empty() ? "" : ", " + str(a, "disposition")) + ")");
        }
}

// Options of `failed retry` and `failed purge`: which entries.
struct selection {
    std::vector<std::string> ids;
    bool all = false;
    std::string connector;
    double older_than_days = -1;
};

std::vector<failed_entry> select_entries(mxctl_context& ctx, const selection& o, const char* verb) {
    std::vector<failed_entry> out;
    if (o.all == !o.ids.empty())
        throw cli_error(std::string("failed ") + verb + ": give IDs or --all", 2);
    if (!o.all) {
        for (auto& id : o.ids) out.push_back(find_one(ctx, id));
        return out;
    }
    std::int64_t cutoff =
        o.older_than_days < 0
            ? INT64_MAX
            : static_cast<std::int64_t>(::time(nullptr) - o.older_than_days * 86400);
    for (auto& e : scan(ctx, o.connector))
        if (e.reason.value("failed_time", std::int64_t{0}) <= cutoff) out.push_back(e);
    return out;
}

void add_selection(CLI::App& cmd, selection& o) {
    cmd.add_option("ID", o.ids, "FILE or CONNECTOR:FILE");
    cmd.add_flag("--all", o.all, "every failed file (of --connector)");
    cmd.add_option("--connector", o.connector, "only this connector (with --all)");
}

void failed_list(mxctl_context& ctx, bool json, const std::string& connector) {
    auto entries = scan(ctx, connector);
    if (json) {
        nlohmann::json arr = nlohmann::json::array();
        for (auto& e : entries) arr.push_back(entry_json(e));
        return print_json(arr);
    }
    if (entries.empty()) {
        std::cout << "no failed imports\n";
        return;
    }
    std::vector<std::vector<std::string>> rows{
        {"ID", "FAILED", "RECIPIENT", "STATUS", "REASON", "BOUNCE"}};
    for (auto& e : entries) {
        std::string rcpt = str(e.reason, "recipient");
        if (auto it = e.reason.find("recipients");
            it != e.reason.end() && it->is_array() && it->size() > 1)
            rcpt += " (+" + std::to_string(it->size() - 1) + ")";
        rows.push_back({e.connector + ":" + e.file,
                        when(e.reason.value("failed_time", std::int64_t{0})), rcpt,
                        str(e.reason, "status"), str(e.reason, "reason"), bounce_state(e.reason)});
    }
    print_table(rows);
}

void failed_show(mxctl_context& ctx, bool json, const std::string& id) {
    auto e = find_one(ctx, id);
    if (!json) return print_show(e);
    auto j = entry_json(e);
    std::error_code ec;
    if (fs::exists(e.message_path(), ec)) {
        std::string why;
        if (auto c = message_content(e, why))
            j["content"] = std::move(*c);
        else
            j["content_error"] = why;
    }
    print_json(j);
}

void failed_retry(mxctl_context& ctx, const selection& o) {
    int failures = 0;
    for (auto& e : select_entries(ctx, o, "retry")) {
        std::string why;
        if (!ops::retry_failed(e, why)) {
            std::cerr << "mxctl: " << e.connector << ":" << e.file << ": " << why << "\n";
            ++failures;
            continue;
        }
        std::cout << "queued for import again: " << e.connector << ":" << e.file << "\n";
    }
    if (failures) ctx.exit_code = 1;
}

void failed_purge(mxctl_context& ctx, const selection& o) {
    std::size_t n = 0;
    for (auto& e : select_entries(ctx, o, "purge")) {
        ops::purge_failed(e);
        ++n;
    }
    std::cout << "purged " << n << " failed import(s)\n";
}

struct status_query {
    std::string file, message_id, queue_id;
    bool json = false;
};

// The journal's records of the messages `q` names, one JSON object per message.
nlohmann::json journal_records(mxctl_context& ctx, const status_query& q, std::string& key) {
    using importer::journal;
    int given = !q.file.empty() + !q.message_id.empty() + !q.queue_id.empty();
    if (given != 1)
        throw cli_error("import-status: give exactly one of --file, --message-id, --queue-id", 2);
    ctx.as_state_owner();  // the journal lives in the daemon account's folder
    std::error_code ec;
    if (!fs::exists(ctx.cfg().journal_dir() / "data.mdb", ec))
        throw cli_error("no import journal at " + ctx.cfg().journal_dir().string() +
                        " (mx-importer has not run)");
    auto j = journal::open(ctx.cfg().journal_dir(), true);
    auto t = j.read();
    auto what = !q.file.empty()         ? journal::by::file
                : !q.message_id.empty() ? journal::by::message_id
                                        : journal::by::queue_id;
    key = !q.file.empty() ? q.file : !q.message_id.empty() ? q.message_id : q.queue_id;
    nlohmann::json out = nlohmann::json::array();
    for (auto& [fp, info] : j.lookup(t, what, key)) {
        nlohmann::json m = {{"fingerprint", fp}, {"deliveries", nlohmann::json::array()}};
        if (info.is_object())
            for (auto& [k, v] : info.items()) m[k] = v;
        for (auto& [rcpt, rec] : j.deliveries_of(t, fp)) {
            nlohmann::json d = rec.is_object() ? rec : nlohmann::json::object();
            d["recipient"] = rcpt;
            m["deliveries"].push_back(d);
        }
        out.push_back(m);
    }
    return out;
}

void import_status(mxctl_context& ctx, const status_query& q) {
    std::string key;
    auto out = journal_records(ctx, q, key);
    if (q.json) return print_json(out);
    if (out.empty()) {
        std::cout << "the journal knows nothing about " << key << "\n";
        ctx.exit_code = 1;
        return;
    }
    for (auto& m : out) {
        std::cout << "message " << str(m, "fingerprint").substr(0, 16) << "  message-id "
                  << str(m, "message_id") << "  queue id " << str(m, "queue_id") << "\n";
        std::vector<std::vector<std::string>> rows{
            {"RECIPIENT", "STATE", "STATUS", "MAILBOX/REASON", "FILE", "WHEN", "HOST"}};
        for (auto& d : m["deliveries"])
            rows.push_back(
                {str(d, "recipient"), str(d, "state"), str(d, "status"),
                 str(d, "state") == "failed" ? str(d, "reason") + ": " + str(d, "diagnostic")
                                             : str(d, "mailbox"),
                 str(d, "file"), when(d.value("time", std::int64_t{0})), str(d, "host")});
        print_table(rows);
    }
    // Why a file may be waiting: targets whose breaker is open or that keep failing.
    if (auto h = importer::read_target_health(ctx.cfg()))
        for (const auto& line : importer::target_health_lines(*h)) std::cout << line << "\n";
}

}  // namespace

void add_failed_commands(CLI::App& app, mxctl_context& ctx) {
    auto* failed =
        app.add_subcommand("failed", "files the importer could not import (<drop>/ImportFailed)");
    failed->require_subcommand(1);

    struct list_opts {
        bool json = false;
        std::string id;  // show: FILE or CONNECTOR:FILE; list: --connector
    };
    auto lo = std::make_shared<list_opts>();
    auto* list = failed->add_subcommand("list", "list failed imports");
    list->add_flag("--json", lo->json, "JSON output");
    list->add_option("--connector", lo->id, "only this connector");
    list->callback([&ctx, lo] { failed_list(ctx, lo->json, lo->id); });

    auto so = std::make_shared<list_opts>();
    auto* show =
        failed->add_subcommand("show", "show one failed import: recipients, reason, bounce");
    show->add_option("ID", so->id, "FILE or CONNECTOR:FILE (from mxctl failed list)")->required();
    show->add_flag("--json", so->json, "JSON output");
    show->callback([&ctx, so] { failed_show(ctx, so->json, so->id); });

    auto ro = std::make_shared<selection>();
    auto* retry = failed->add_subcommand(
        "retry", "put failed files back into the import path (once; after fixing the mailbox)");
    add_selection(*retry, *ro);
    retry->callback([&ctx, ro] { failed_retry(ctx, *ro); });

    auto po = std::make_shared<selection>();
    auto* purge = failed->add_subcommand("purge", "delete failed files and their reason files");
    add_selection(*purge, *po);
    purge->add_option("--older-than", po->older_than_days,
                      "with --all: only files failed more than DAYS ago");
    purge->callback([&ctx, po] { failed_purge(ctx, *po); });

    // mxctl import-status: the journal's view of a file / message-id / queue id.
    auto q = std::make_shared<status_query>();
    auto* status = app.add_subcommand(
        "import-status", "what the importer did with a file, message-id or queue id (journal)");
    status->add_option("--file", q->file, "drop-folder file name");
    status->add_option("--message-id", q->message_id, "Message-ID (with <>)");
    status->add_option("--queue-id", q->queue_id,
                       "the MTA's queue id (Postfix or Sendmail, from the topmost Received:)");
    status->add_flag("--json", q->json, "JSON output");
    status->callback([&ctx, q] { import_status(ctx, *q); });
}

}  // namespace mx::admin
