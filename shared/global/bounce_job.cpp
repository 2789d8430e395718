#include "global/bounce_job.hpp"

#include <sys/stat.h>

#include "util/fs.hpp"

namespace mx {

nlohmann::json to_json(const bounce_job& j) {
    nlohmann::json rcpts = nlohmann::json::array();
    for (const auto& r : j.recipients)
        rcpts.push_back({{"final_recipient", r.final_recipient},
                         {"original_recipient", r.original_recipient},
                         {"status", r.status},
                         {"diagnostic", r.diagnostic},
                         {"reason", r.reason}});
    return {{"id", j.id},
            {"connector", j.connector},
            {"envelope_sender", j.envelope_sender},
            {"message_path", j.message_path},
            {"work_path", j.work_path},
            {"reason_path", j.reason_path},
            {"fingerprint", j.fingerprint},
            {"message_id", j.message_id},
            {"queue_id", j.queue_id},
            {"arrival_time", j.arrival_time},
            {"created_time", j.created_time},
            {"recipients", rcpts}};
}

bounce_job bounce_job_from_json(const nlohmann::json& j) {
    bounce_job b;
    b.id = j.value("id", "");
    b.connector = j.value("connector", "");
    b.envelope_sender = j.value("envelope_sender", "");
    b.message_path = j.value("message_path", "");
    b.work_path = j.value("work_path", "");
    b.reason_path = j.value("reason_path", "");
    b.fingerprint = j.value("fingerprint", "");
    b.message_id = j.value("message_id", "");
    b.queue_id = j.value("queue_id", "");
    b.arrival_time = j.value("arrival_time", std::int64_t{0});
    b.created_time = j.value("created_time", std::int64_t{0});
    if (auto it = j.find("recipients"); it != j.end() && it->is_array())
        for (const auto& r : *it)
            b.recipients.push_back({r.value("final_recipient", ""),
                                    r.value("original_recipient", ""), r.value("status", ""),
                                    r.value("diagnostic", ""), r.value("reason", "")});
    return b;
}

std::filesystem::path bounce_spool_dir(const config& cfg) {
    return cfg.state_dir / "bounces";
}

namespace {

// <spool>/done/<id>.json: where the sender keeps a finished job (and its outcome).
std::optional<std::filesystem::path> done_job(const config& cfg, const std::string& id) {
    auto done = bounce_spool_dir(cfg) / "done" / (id + ".json");
    struct stat sb {};
    if (::lstat(done.c_str(), &sb) != 0) return std::nullopt;
    return done;
}

}  // namespace

std::filesystem::path spool_bounce(const config& cfg, const bounce_job& job) {
    // Idempotent across crashes: the id is derived from the failure (message fingerprint and
    // recipients), so a file that is finalised again after a crash between spooling and the
    // move to ImportFailed gets the same id. If the sender already handled it (done/), a second
    // job would be a second bounce for one failure.
    if (auto done = done_job(cfg, job.id)) return *done;
    auto dir = bounce_spool_dir(cfg) / "new";
    util::make_dirs(dir, 0750);
    auto path = dir / (job.id + ".json");
    util::write_file_durable(path, to_json(job).dump(), 0640);
    return path;
}

std::optional<nlohmann::json> bounce_outcome(const config& cfg, const std::string& id) {
    auto done = done_job(cfg, id);
    if (!done) return std::nullopt;
    try {
        auto j = nlohmann::json::parse(util::read_file(*done));
        if (auto it = j.find("outcome"); it != j.end() && it->is_object()) return *it;
    } catch (const std::exception&) {
    }
    return nlohmann::json{{"state", "unknown"}, {"job", id}};
}

}  // namespace mx
