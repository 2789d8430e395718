// bounce_job: the hand-over from the importer (a late failure) to the bounce sender.
//
// Contract: before a failed file is finalised in <drop>/ImportFailed, the importer spools a
// bounce_job durably into <state_dir>/bounces/new/<id>.json (spool_bounce). The bounce sender
// (importer/bounce_*.cpp) owns everything after that: building the RFC 3464 DSN, deciding
// whether one may be sent at all, sending with retries, and recording the outcome in the
// failure's reason file ("bounce" object) so `mxctl failed show` can tell whether it went out.
// A job is never deleted before its outcome is recorded: nothing is lost across restarts.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "global/config.hpp"

namespace mx {

struct failed_recipient {
    std::string final_recipient;     // the envelope recipient that failed (local@domain)
    std::string original_recipient;  // X-Original-To / ORCPT when known
    std::string status;              // RFC 3463, e.g. "5.1.1"
    std::string diagnostic;          // human text, e.g. "mailbox removed before import"
    std::string reason;              // no-mailbox | unparseable | too-large | refused | expired
};

struct bounce_job {
    std::string id;  // unique, filesystem-safe
    std::string connector;
    std::string envelope_sender;  // empty: null sender <> (never bounced)
    std::string message_path;     // the original bytes, in ImportFailed
    std::string work_path;        // where they are until the importer moves them there
    std::string reason_path;      // the failure's reason JSON next to it
    std::string fingerprint;      // message fingerprint (journal key part)
    std::string message_id;
    std::string queue_id;
    std::int64_t arrival_time = 0;  // unix seconds
    std::int64_t created_time = 0;
    std::vector<failed_recipient> recipients;
};

nlohmann::json to_json(const bounce_job& j);
bounce_job bounce_job_from_json(const nlohmann::json& j);

std::filesystem::path bounce_spool_dir(const config& cfg);  // <state_dir>/bounces
// Durably writes the job to <spool>/new/<id>.json; returns its path. A job whose id the sender
// has already finished (<spool>/done/<id>.json) is not spooled again: returns that path.
std::filesystem::path spool_bounce(const config& cfg, const bounce_job& job);
// The sender's recorded outcome of a finished job (<spool>/done/<id>.json), if there is one.
std::optional<nlohmann::json> bounce_outcome(const config& cfg, const std::string& id);

}  // namespace mx
