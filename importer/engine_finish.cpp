// engine_finish: steps 5-8 of a batch — deliveries on the targets' lanes, one sync, the
// decision per file (ImportFailed with a bounce when finished with failures), the final journal
// records with the retry schedule, and the log/counters.
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <set>

#include "delivery_lanes.hpp"
#include "engine_item.hpp"
#include "global/bounce_job.hpp"
#include "target_health.hpp"
#include "target_http.hpp"

namespace mx::importer {
namespace {

std::atomic<std::uint64_t> connector_counters::*counter_for(const std::string& reason) {
    if (reason == "no-mailbox") return &connector_counters::failed_no_mailbox;
    if (reason == "unparseable") return &connector_counters::failed_unparseable;
    if (reason == "too-large") return &connector_counters::failed_too_large;
    if (reason == "expired") return &connector_counters::failed_expired;
    return &connector_counters::failed_refused;
}

}  // namespace

void engine::dispatch(batch& b) {
    // A lane still busy with parked files' deliveries (a slow target) will not get to this
    // batch's soon: the batch does not wait for those (they are parked at once).
    std::set<std::string> behind;
    {
        std::lock_guard lk(done_mu_);
        batch_started_ = batch_ended_ = 0;
        for (const auto& [spec, n] : lane_jobs_)
            if (n > 0) behind.insert(spec);
    }
    // All of the batch's jobs go onto the lanes at once (one lock, one wake-up per thread).
    std::vector<std::pair<std::string, std::function<void()>>> jobs;
    for (auto& itp : b.items) {
        item* it = itp.get();
        for (std::size_t i = 0; i < it->rcpts.size(); ++i) {
            auto& r = it->rcpts[i];
            if (!r.to_deliver || !r.target || r.planned.empty()) continue;
            bool awaited = !behind.count(r.spec);
            {
                std::lock_guard lk(done_mu_);
                ++it->outstanding;
                ++lane_jobs_[r.spec];
                if (awaited) ++batch_outstanding_;
            }
            // The lane runs deliveries of this target one after another; other targets' lanes
            // go on meanwhile. The result comes back under done_mu_.
            jobs.emplace_back(r.spec, [this, it, i, awaited, conn = b.f->connector] {
                auto& rc = it->rcpts[i];
                delivery d{it->work,       it->pr.size,  rc.key,
                           rc.mailbox,     conn,         it->pr.fingerprint,
                           it->first_seen, &it->pr.info, it->mtime_hint != 0};
                {
                    std::lock_guard lk(done_mu_);
                    if (awaited && !it->from) ++batch_started_;
                }
                sync_set s(s_.durability);
                result res;
                auto now = now_unix();
                if (auto until = health_->paused(rc.spec, now)) {
                    // Paused by an earlier delivery of this lane: not tried.
                    res = {result_kind::temporary,
                           "4.4.5",
                           "target " + rc.target->describe() + " paused until " +
                               mail::iso8601(*until) + " after repeated temporary failures",
                           {}};
                    res.retry_after = std::chrono::seconds(std::max<std::int64_t>(1, *until - now));
                } else {
                    try {
                        res = rc.target->deliver(d, rc.planned, s);
                    } catch (const std::exception& e) {
                        res = {result_kind::temporary,
                               "4.3.0",
                               std::string("deliver: ") + e.what(),
                               {}};
                    }
                    health_->record(rc.spec, rc.target->describe(), res, now_unix());
                }
                // Wake-ups only when someone waits for them: the batch when its last delivery
                // ends, the daemon's loop when a parked file is complete (one per file, not
                // per delivery: a batch of Maildir links costs no context switches).
                bool batch_done = false, parked_done = false;
                {
                    std::lock_guard lk(done_mu_);
                    rc.res = std::move(res);
                    if (rc.res.kind == result_kind::permanent) rc.reason = "refused";
                    it->sync.merge(s);
                    --it->outstanding;
                    ++completions_;
                    if (--lane_jobs_[rc.spec] == 0) lane_jobs_.erase(rc.spec);
                    if (it->from) {
                        parked_done = it->outstanding == 0;
                    } else if (awaited) {
                        ++batch_ended_;
                        batch_done = --batch_outstanding_ == 0;
                    }
                }
                if (batch_done) done_cv_.notify_all();
                std::uint64_t one = 1;
                if (parked_done && wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
            });
        }
    }
    lanes_->submit_all(std::move(jobs));
}

void engine::sync_items(const folder& f, std::vector<item*>& items) {
    sync_set all(s_.durability);
    for (auto* it : items) all.merge(it->sync);
    try {
        all.sync();
    } catch (const std::system_error& e) {
        spdlog::error("connector {}: making the batch durable failed: {}; will retry", f.connector,
                      e.what());
        for (auto* it : items)
            for (auto& r : it->rcpts)
                if (r.res.kind == result_kind::imported && !r.settled)
                    r.res = {result_kind::temporary, "4.3.0", std::string("sync: ") + e.what(), {}};
    }
}

void engine::settle(const folder& f, std::vector<item*>& items, batch_stats& bs) {
    if (items.empty()) return;
    const std::int64_t now = now_unix();
    sync_items(f, items);
    decide(f, items, now);
    write_final(f, items, now);
    cluster_finish(items);  // 7b. cluster: marks in PostgreSQL before the files go (step 8)
    report(f, items, bs);
}

void engine::decide(const folder& f, std::vector<item*>& items, std::int64_t now) {
    // decide per file; a file is finished when no recipient is temporary: then its
    // permanent failures (of this try and held from earlier ones) go to ImportFailed with one
    // bounce. While a recipient is temporary, permanent outcomes are held (journal state
    // "held"): no bounce, no count, no "failed" line yet.
    for (auto* itp : items) {
        auto& it = *itp;
        if (it.vanished) continue;
        bool any_temp = it.any_temporary();
        if (any_temp && now - it.first_seen > s_.max_age.count()) {
            for (auto& r : it.rcpts)
                if (r.res.kind == result_kind::temporary) {
                    r.res = {result_kind::permanent,
                             "5.4.7",
                             r.res.status + " " + r.res.detail + "; retried since " +
                                 mail::iso8601(it.first_seen) + ", giving up",
                             {}};
                    r.reason = "expired";
                }
            any_temp = false;
        }
        if (any_temp) continue;
        bool any_new_failure = false;
        for (auto& r : it.rcpts)
            any_new_failure |= r.res.kind == result_kind::permanent && !r.settled;
        if (any_new_failure) {
            try {
                finish_failed(f, it);
            } catch (const std::exception& e) {
                spdlog::error("connector {}: cannot move {} to ImportFailed: {}; will retry",
                              f.connector, log_safe(it.name), e.what());
                for (auto& r : it.rcpts)
                    if (r.res.kind == result_kind::permanent && !r.settled)
                        r.res.kind = result_kind::temporary;  // keep it; try again later
            }
        }
    }
}

nlohmann::json engine::retry_record(const item& it, const std::string& last_error,
                                    std::int64_t now) {
    int attempts = it.attempts + 1;
    long delay = s_.retry_base.count() << std::min(attempts - 1, 20);
    delay = std::min<long>(delay, s_.retry_max.count());
    // A receiver's Retry-After (or a paused target's end of pause) is the least wait.
    std::optional<std::chrono::seconds> ra;
    for (const auto& r : it.rcpts)
        if (r.res.kind == result_kind::temporary && r.res.retry_after)
            ra = std::max(ra.value_or(std::chrono::seconds(0)), *r.res.retry_after);
    if (ra)
        delay = std::max<long>(
            delay, retry_delay(attempts, s_.retry_base, s_.retry_max, ra, 0.5, 0.0).count());
    return nlohmann::json{{"attempts", attempts},
                          {"next", now + delay},
                          {"first_seen", it.first_seen},
                          {"last_error", last_error}};
}

void engine::write_final(const folder& f, std::vector<item*>& items, std::int64_t now) {
    auto write = [&](lmdb::txn& t, item& it) {
        inject_journal_fault(it.name, "final");
        if (it.vanished) {
            journal_.del_retry(t, it.work.string());
            return;
        }
        bool any_temp = it.any_temporary();
        nlohmann::json rcpt_list = nlohmann::json::array();
        std::string last_error;
        for (auto& r : it.rcpts) {
            if (r.res.kind == result_kind::temporary) {
                last_error = r.res.status + " " + r.res.detail;
                continue;
            }
            rcpt_list.push_back(r.key);
            if (r.settled || it.pr.fingerprint.empty()) continue;
            nlohmann::json rec = {{"connector", f.connector},
                                  {"mailbox", r.mailbox},
                                  {"file", it.name},
                                  {"message_id", it.pr.info.message_id},
                                  {"queue_id", it.pr.info.queue_id},
                                  {"size", it.pr.size},
                                  {"time", now},
                                  {"host", s_.host},
                                  {"status", r.res.status}};
            if (r.res.kind == result_kind::imported) {
                rec["state"] = "imported";
                rec["target"] = r.spec;
                rec["location"] = r.planned;
                rec["path"] = r.res.location;
            } else {
                // Finished: in ImportFailed with its bounce. Not finished: held (see step 6).
                rec["state"] = any_temp ? "held" : "failed";
                rec["reason"] = r.reason;
                rec["diagnostic"] = r.res.detail;
                rec["failed_path"] = it.failed_path;
                rec["bounce_spooled"] = !any_temp && !it.failed_path.empty();
            }
            journal_.put_delivery(t, it.pr.fingerprint, r.key, std::move(rec));
        }
        if (!it.pr.fingerprint.empty())
            journal_.index(t, it.name, it.pr.fingerprint, it.pr.info.message_id,
                           it.pr.info.queue_id,
                           {{"connector", f.connector},
                            {"recipients", rcpt_list},
                            {"time", now},
                            {"message_id", it.pr.info.message_id},
                            {"queue_id", it.pr.info.queue_id}});
        if (any_temp)
            journal_.put_retry(t, it.work.string(), retry_record(it, last_error, now));
        else
            journal_.del_retry(t, it.work.string());
    };
    write_each(journal_, f.connector, items, write, [&](item& it, const std::string& what) {
        if (it.vanished || !it.failed_path.empty()) return;  // not in .work any more
        // Its deliveries stay "pending" in the journal: the next try finds them delivered and
        // records them then (the crash recovery path).
        it.defer("4.3.0", "journal: " + what);
        try {
            journal_.write([&](lmdb::txn& t) {
                journal_.put_retry(t, it.work.string(),
                                   retry_record(it, "4.3.0 journal write failed", now));
            });
        } catch (const std::exception& e) {
            // Not even a retry record: remember the schedule in memory so this file never
            // blocks the folder (a restart retries it at once).
            auto next = retry_record(it, "", now).value("next", now + s_.retry_base.count());
            unrecorded_retries_[it.work.string()] = next;
            spdlog::error("connector {}: no retry record for {}: {}", f.connector,
                          log_safe(it.name), e.what());
        }
    });
}

void engine::report(const folder& f, std::vector<item*>& items, batch_stats& bs) {
    for (auto* itp : items) {
        auto& it = *itp;
        ++bs.files;
        if (it.vanished) {
            spdlog::warn("connector {}: {} disappeared before it could be read", f.connector,
                         log_safe(it.name));
            continue;
        }
        bool any_temp = it.any_temporary();
        auto* cc = shm_ ? &shm_->counters(f.connector) : nullptr;
        for (auto& r : it.rcpts) {
            const char* outcome = r.settled                              ? "duplicate"
                                  : r.res.kind == result_kind::imported  ? "imported"
                                  : r.res.kind == result_kind::temporary ? "deferred"
                                  : any_temp                             ? "held"
                                                                         : "failed";
            spdlog::info(
                "import connector={} rcpt=<{}> mailbox={} msgid={} size={} queue_id={} outcome={} "
                "status={} reason={} detail=\"{}\" file={}",
                f.connector, log_safe(r.key), log_safe(r.mailbox), log_safe(it.pr.info.message_id),
                it.pr.size, log_safe(it.pr.info.queue_id), outcome, r.res.status, r.reason,
                log_safe(r.res.detail), log_safe(it.name));
            if (r.settled) continue;
            if (r.res.kind == result_kind::imported) {
                ++bs.imported;
                if (cc) cc->imported.fetch_add(1, std::memory_order_relaxed);
            } else if (r.res.kind == result_kind::permanent && !any_temp) {
                ++bs.failed;
                if (cc) (cc->*counter_for(r.reason)).fetch_add(1, std::memory_order_relaxed);
            }
        }
        if (any_temp) {
            ++bs.deferred;
            if (cc) cc->retried.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        if (it.failed_path.empty()) ::unlink(it.work.c_str());
    }

    // Files waiting for a target: shown with the target's state.
    for (auto* it : items)
        for (auto& r : it->rcpts)
            if (!r.spec.empty() && !r.settled)
                health_->waiting(r.spec, it->work.string(),
                                 !it->vanished && r.res.kind == result_kind::temporary);
}

void engine::finish_failed(const folder& f, item& it) {
    const std::int64_t now = now_unix();
    const auto& info = it.pr.info;
    // Bounded: a drop file name near NAME_MAX plus ".json" and a temporary suffix would not
    // fit, and the file would never leave .work/. The reason file keeps the original name.
    std::string fname = bounded_name(it.name, max_failed_name);
    auto dir = f.failed_dir();
    struct stat sb {};
    if (::lstat((dir / fname).c_str(), &sb) == 0)
        fname += "." + (it.pr.fingerprint.empty() ? short_hash(it.work.string())
                                                  : it.pr.fingerprint.substr(0, 12));
    auto msg_path = dir / fname;
    auto reason_path = dir / (fname + ".json");

    bounce_job job;
    std::string rcpt_keys;
    nlohmann::json rcpts = nlohmann::json::array();
    bool need_bounce = false;
    for (auto& r : it.rcpts) {
        if (r.res.kind != result_kind::permanent || r.settled) continue;
        rcpts.push_back({{"recipient", r.key},
                         {"original_recipient", info.env.original_recipient},
                         {"reason", r.reason},
                         {"status", r.res.status},
                         {"diagnostic", r.res.detail}});
        rcpt_keys += r.key + "\n";
        if (!r.bounce_done) {
            need_bounce = true;
            job.recipients.push_back(
                {r.key, info.env.original_recipient, r.res.status, r.res.detail, r.reason});
        }
    }
    job.id = "b" +
             (it.pr.fingerprint.empty() ? short_hash(it.work.string())
                                        : it.pr.fingerprint.substr(0, 24)) +
             "-" + short_hash(rcpt_keys);
    job.connector = f.connector;
    job.envelope_sender = info.env.sender;
    job.message_path = msg_path.string();
    job.work_path = it.work.string();
    job.reason_path = reason_path.string();
    job.fingerprint = it.pr.fingerprint;
    job.message_id = info.message_id;
    job.queue_id = info.queue_id;
    job.arrival_time = it.first_seen;
    job.created_time = now;
    // A try after a crash, whose bounce the sender already handled: keep its recorded outcome.
    nlohmann::json bounce = {{"state", "pending"}, {"job", job.id}};
    if (!need_bounce)
        bounce = {{"state", "not-sent"}, {"why", "a bounce was already spooled for this failure"}};
    else if (auto handled = bounce_outcome(cfg_, job.id)) {
        need_bounce = false;
        bounce = std::move(*handled);
    }

    nlohmann::json reason = {{"file", fname},
                             {"original_name", it.name},
                             {"connector", f.connector},
                             {"drop_folder", f.drop.string()},
                             {"recipient", rcpts.empty() ? "" : rcpts[0].value("recipient", "")},
                             {"reason", rcpts.empty() ? "" : rcpts[0].value("reason", "")},
                             {"status", rcpts.empty() ? "" : rcpts[0].value("status", "")},
                             {"diagnostic", rcpts.empty() ? "" : rcpts[0].value("diagnostic", "")},
                             {"recipients", rcpts},
                             {"time", mail::iso8601(now)},
                             {"failed_time", now},
                             {"arrival_time", it.first_seen},
                             {"importer_host", s_.host},
                             {"message_id", info.message_id},
                             {"queue_id", info.queue_id},
                             {"subject", info.subject},
                             {"from", info.from},
                             {"envelope_sender", info.env.sender},
                             {"envelope_sender_known", info.env.sender_known},
                             {"envelope_source", info.env.source},
                             {"size", it.pr.size},
                             {"fingerprint", it.pr.fingerprint},
                             {"bounce", bounce}};
    util::write_file_durable(reason_path, journal::dump(reason), 0640);
    if (need_bounce) spool_bounce(cfg_, job);
    inject_crash(it.name, "failed-move");  // tests: killed between the spool and the move
    util::rename_durable(it.work, msg_path);
    it.failed_path = msg_path.string();
}

}  // namespace mx::importer
