// engine_plan: steps 2-4 of a batch — parse the claimed files, plan each recipient (journal
// first: never twice; then the milter's decision, the target, a planned location) and write
// the pending records before anything becomes visible.
#include <sys/stat.h>

#include <cerrno>

#include "engine_item.hpp"
#include "global/address.hpp"
#include "global/recipient_check.hpp"
#include "target_health.hpp"

namespace mx::importer {
namespace {

using rcpt = engine::item::rcpt;

void fail_all(engine::item& it, const std::string& reason, const std::string& status,
              const std::string& diag) {
    for (auto& r : it.rcpts) r.res = {result_kind::permanent, status, diag, {}}, r.reason = reason;
    if (it.rcpts.empty()) {
        rcpt r;
        r.res = {result_kind::permanent, status, diag, {}};
        r.reason = reason;
        it.rcpts.push_back(std::move(r));
    }
}

// A file the parser could not read or parse: its outcome now. False: parsed, plan it.
bool unreadable(engine::item& it) {
    auto& pr = it.pr;
    if (pr.st == parse_result::status::io_error) {
        if (pr.err == ENOENT) {
            struct stat sb {};
            if (::lstat(it.work.c_str(), &sb) != 0) {
                it.vanished = true;
                return true;
            }
            // Still there, yet the parser found no such file: it can never read this one
            // (it would loop forever as "vanished"): the file's failure, not a retry.
            fail_all(it, "unparseable", "5.6.0", "the parser cannot open the file: " + pr.error);
            return true;
        }
        if (pr.err == ELOOP || pr.err == EINVAL) {  // a symlink or not a regular file
            fail_all(it, "unparseable", "5.6.0", "not a regular file: " + pr.error);
            return true;
        }
        rcpt r;  // EACCES, EIO, ...: an administrator can fix it; retry
        r.res = {result_kind::temporary, "4.3.0", "cannot read the file: " + pr.error, {}};
        it.rcpts.push_back(std::move(r));
        return true;
    }
    if (pr.st != parse_result::status::ok) {
        for (const auto& raw : pr.info.env.recipients) {  // from the envelope-only pass
            rcpt r;
            r.raw = raw;
            auto pa = parse_address(raw);
            r.key = std::holds_alternative<address>(pa) ? std::get<address>(pa).str() : raw;
            it.rcpts.push_back(std::move(r));
        }
        fail_all(it, "unparseable", "5.6.0", "message could not be parsed: " + pr.error);
        return true;
    }
    if (pr.size == 0) {
        fail_all(it, "unparseable", "5.6.0", "empty file");
        return true;
    }
    return false;
}

// The envelope recipients of a parsed file (To/Cc of this connector's domains as last resort).
void collect_rcpts(engine::item& it, store_view& view, const std::string& connector) {
    const auto& env = it.pr.info.env;
    std::vector<std::string> raws = env.recipients;
    if (env.source == "to-cc") {
        std::vector<std::string> mine;
        for (const auto& a : raws) {
            auto pa = parse_address(a);
            if (auto* ad = std::get_if<address>(&pa)) {
                auto m = view.match_domain(ad->domain);
                if (m && m->connector == connector) mine.push_back(a);
            }
        }
        spdlog::warn("connector {}: {} has no envelope headers; using To/Cc as last resort: {}",
                     connector, log_safe(it.name),
                     log_safe(nlohmann::json(mine).dump(-1, ' ', false,
                                                        nlohmann::json::error_handler_t::replace)));
        raws = mine;
    }
    for (const auto& raw : raws) {
        rcpt r;
        r.raw = raw;
        auto pa = parse_address(raw);
        if (auto* err = std::get_if<address_error>(&pa)) {
            r.key = raw;
            r.reason = "no-mailbox";
            r.res = {result_kind::permanent, "5.1.3", "bad recipient address: " + err->reason, {}};
        } else {
            r.key = std::get<address>(pa).str();
        }
        it.rcpts.push_back(std::move(r));
    }
}

// The same bytes for the same recipient in an earlier file of this batch (or one still on a
// lane): that file's outcome is this one's too (the journal's rule for a re-delivered
// message), never a second delivery or a second bounce. Marks `r` settled and says so.
bool duplicate_in_batch(engine::batch& b, const engine::item& it, rcpt& r) {
    if (it.pr.fingerprint.empty()) return false;  // unknown bytes: nothing to compare
    auto [at, first] = b.taken.emplace(journal::delivery_key(it.pr.fingerprint, r.key), it.name);
    if (first) return false;
    r.settled = true;
    r.res = {result_kind::imported,
             "2.0.0",
             "duplicate: the same message as " + at->second + " (its outcome stands)",
             {}};
    ++b.bs.duplicates;
    return true;
}

}  // namespace

void engine::parse_items(batch& b) {
    // Items parsed ahead (take_prefetched) keep their results; the rest are parsed now.
    std::vector<item*> todo;
    for (auto& it : b.items)
        if (!it->parsed) todo.push_back(it.get());
    await_parsing();  // another folder's next batch may still be on the workers
    if (!todo.empty()) {
        auto results = parse_all(todo);
        for (std::size_t i = 0; i < todo.size(); ++i) {
            todo[i]->pr = std::move(results[i]);
            todo[i]->parsed = true;
        }
    }
    for (auto& itp : b.items) {
        auto& it = *itp;
        if (it.pr.st != parse_result::status::crashed && it.pr.st != parse_result::status::timeout)
            continue;
        // Once more alone with a fresh worker; a second failure is the message's fault.
        spdlog::warn("connector {}: parser failed on {} ({}); retrying once", b.f->connector,
                     log_safe(it.name), it.pr.error);
        auto again = workers_.front()->parse(it.work);
        if (again.st == parse_result::status::ok || again.st == parse_result::status::io_error) {
            it.pr = std::move(again);
            continue;
        }
        // Unparseable for good; still learn sender and recipients (no mimetic, no GMime) so
        // the failure is recorded per recipient and the bounce can go out.
        auto env = workers_.front()->parse(it.work, 0, true);
        if (env.st == parse_result::status::ok) {
            it.pr.fingerprint = env.fingerprint;
            it.pr.size = env.size;
            it.pr.mtime = env.mtime;
            it.pr.info = std::move(env.info);
        }
    }
}

void engine::plan_items(batch& b, store& st) {
    {
        // Deliveries still running for parked files are taken too: their files own them.
        std::lock_guard lk(done_mu_);
        for (const auto& it : parked_)
            if (!it->pr.fingerprint.empty())
                for (const auto& r : it->rcpts)
                    if (r.to_deliver)
                        b.taken.emplace(journal::delivery_key(it->pr.fingerprint, r.key), it->name);
    }
    auto view = st.read();
    auto rt = journal_.read();
    for (auto& it : b.items) {
        try {
            plan_file(b, *it, view, rt);
        } catch (const std::exception& e) {
            // Whatever went wrong is this file's problem: it waits for a retry, the batch goes on.
            spdlog::error("connector {}: cannot plan {}: {}; will retry", b.f->connector,
                          log_safe(it->name), e.what());
            it->defer("4.3.0", std::string("planning failed: ") + e.what());
        }
    }
    rt.abort();
}

// A pending record of an earlier try (a crash between delivery and the final record): when
// the target has it, it stands (made durable now) and nothing is delivered again.
bool engine::recover_pending(item& it, std::size_t i, const nlohmann::json& rec) {
    auto& r = it.rcpts[i];
    std::string spec = rec.value("target", ""), loc = rec.value("location", "");
    if (loc.empty()) return false;
    try {
        auto& t = targets_.get(spec);
        auto where = t.recover(loc, it.sync);
        if (!where) return false;
        r.target = &t;
        r.spec = spec;
        r.mailbox = rec.value("mailbox", "");
        r.planned = loc;
        r.res = {result_kind::imported, "2.0.0", "recovered after a crash", *where};
        return true;
    } catch (const std::exception&) {
        return false;  // planned afresh
    }
}

void engine::plan_file(batch& b, item& it, store_view& view, lmdb::txn& rt) {
    const folder& f = *b.f;
    auto& pr = it.pr;
    if (it.first_seen == 0) it.first_seen = pr.mtime ? pr.mtime : b.now;
    if (unreadable(it)) return;
    collect_rcpts(it, view, f.connector);
    if (it.rcpts.empty()) {
        fail_all(it, "unparseable", "5.6.0",
                 "no envelope recipient (no X-Receiver, Delivered-To, X-Original-To, nor a "
                 "To/Cc address of this connector)");
        return;
    }
    if (f.max_size > 0 && pr.size > f.max_size) {
        fail_all(it, "too-large", "5.3.4",
                 "message size " + std::to_string(pr.size) + " exceeds the connector's limit " +
                     std::to_string(f.max_size));
        return;
    }
    const auto policy = check_policy::from(cfg_);
    for (std::size_t i = 0; i < it.rcpts.size(); ++i) {
        auto& r = it.rcpts[i];
        if (duplicate_in_batch(b, it, r)) continue;
        if (r.res.kind == result_kind::permanent && !r.reason.empty()) continue;
        // The journal first: never twice.
        if (auto rec = journal_.delivery(rt, pr.fingerprint, r.key); rec && rec->is_object()) {
            std::string state = rec->value("state", "");
            if (state == "imported") {
                r.settled = true;
                r.res = {result_kind::imported, "2.0.0", "duplicate", rec->value("location", "")};
                ++b.bs.duplicates;
                continue;
            }
            if (state == "failed") {
                r.was_failed = true;
                r.bounce_done = rec->value("bounce_spooled", false);
                std::string fp = rec->value("failed_path", "");
                if (it.origin != 'r' && !fp.empty() && std::filesystem::exists(fp)) {
                    r.settled = true;  // the earlier copy in ImportFailed stands
                    r.res = {
                        result_kind::permanent, rec->value("status", ""), "already failed", {}};
                    r.reason = rec->value("reason", "");
                    ++b.bs.duplicates;
                    continue;
                }
            }
            if (state == "held") {
                // A permanent outcome of an earlier try of this file, whose bounce waits
                // until the file is finished: it stands (the target is not asked again).
                r.res = {result_kind::permanent,
                         rec->value("status", ""),
                         rec->value("diagnostic", ""),
                         {}};
                r.reason = rec->value("reason", "");
                r.mailbox = rec->value("mailbox", "");
                continue;
            }
            if (state == "pending" && recover_pending(it, i, *rec)) continue;
        }
        // The milter's decision, resolved to a destination (one function for both).
        auto pa = parse_address(r.key);
        auto dec = decide_import(view, policy, std::get<address>(pa), f.connector);
        if (dec.what == import_decision::kind::no_mailbox) {
            r.reason = "no-mailbox";
            r.res = {result_kind::permanent, "5.1.1", dec.detail, {}};
            continue;
        }
        if (dec.what == import_decision::kind::tempfail) {
            r.res = {result_kind::temporary, "4.2.1", dec.detail, {}};
            continue;
        }
        r.mailbox = dec.mailbox;
        try {
            if (dec.what == import_decision::kind::postmaster) {
                r.spec = cfg_.effective_postmaster_target();
            } else {
                auto mb = view.find_mailbox(r.mailbox);
                r.spec = effective_target(cfg_, mb ? mb->target : "", f.default_target, r.mailbox);
            }
            r.target = &targets_.get(r.spec);
        } catch (const std::exception& e) {
            r.res = {result_kind::temporary, "4.3.5", std::string("target: ") + e.what(), {}};
            continue;
        }
        // A paused target (its breaker is open) is not asked: the file waits for the pause.
        if (auto until = health_->admit(r.spec, r.target->describe(), b.now)) {
            r.res = {result_kind::temporary,
                     "4.4.5",
                     "target " + r.target->describe() + " paused until " + mail::iso8601(*until) +
                         " after repeated temporary failures",
                     {}};
            r.res.retry_after = std::chrono::seconds(std::max<std::int64_t>(1, *until - b.now));
            r.target = nullptr;
            continue;
        }
        delivery d{it.work,     pr.size,        r.key,         r.mailbox,
                   f.connector, pr.fingerprint, it.first_seen, &pr.info};
        r.planned = r.target->plan(d);
        r.to_deliver = true;
        b.any_planned = true;
    }
}

void engine::write_pending(batch& b) {
    if (!b.any_planned) return;
    const folder& f = *b.f;
    auto write = [&](lmdb::txn& t, item& it) {
        bool planned = false;
        for (const auto& r : it.rcpts) planned |= r.to_deliver;
        if (!planned) return;
        inject_journal_fault(it.name, "pending");
        for (auto& r : it.rcpts)
            if (r.to_deliver && r.target && !r.planned.empty())
                journal_.put_delivery(t, it.pr.fingerprint, r.key,
                                      {{"state", "pending"},
                                       {"connector", f.connector},
                                       {"mailbox", r.mailbox},
                                       {"target", r.spec},
                                       {"location", r.planned},
                                       {"file", it.name},
                                       {"time", b.now},
                                       {"host", s_.host}});
    };
    write_each(journal_, f.connector, b.items, write,
               [](item& it, const std::string& what) { it.defer("4.3.0", "journal: " + what); });
}

}  // namespace mx::importer
