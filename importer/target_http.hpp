// target_http: private header of the application targets — "webhook:URL" (target_webhook.cpp,
// JSON bodies in target_webhook_json.cpp) and "exec:COMMAND ARGS" (target_exec.cpp) — plus the
// pieces they share (concurrency slots, reason text, retry delays) and that tests and
// `mxctl target-test` use directly.
//
// Promises:
// - A delivery is identified at the wire by its idempotency key = the journal key (message
//   fingerprint + normalised recipient). A restart after a crash re-delivers with the same key
//   (delivered() answers false: an HTTP receiver or a command cannot be asked), so delivery is
//   at-least-once at the wire and exactly-once for receivers that deduplicate on the key.
// - Result mapping: webhook 2xx imported; 4xx except 408/429 permanent; 408/429/5xx/3xx/
//   timeout/connection errors temporary (Retry-After kept in result::retry_after). exec as
//   Postfix pipe(8): 0 imported, 75 temporary, 67 permanent 5.1.1, other exit codes permanent,
//   killed by a signal or the timeout temporary.
// - Per target, at most `concurrency` deliveries run at once across every process on this host
//   (flock()ed slot files under <run_dir>/targets/).
// Security: the per-mailbox secret (secret_name::target_secret) signs the body (HMAC-SHA256)
// and may serve as bearer token or basic-auth password; it is never logged nor put in a result.
// Text from receivers and commands (hostile) is made single-line, CRLF-free and truncated
// before it reaches logs, reason files and bounces. Commands run without a shell, from an
// absolute path, in their own process group, with no inherited descriptors and a fixed
// environment. Hostile MIME for JSON bodies is walked only in a forked, resource-limited child.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "global/config.hpp"
#include "global/config_reader.hpp"
#include "import_target.hpp"

namespace mx::importer {

// ---- shared -------------------------------------------------------------------------------

// "<fingerprint>:<recipient>" with bytes outside 0x21..0x7e and '%' percent-encoded, so it is
// a valid header value and environment value (the journal key with ':' for ' ').
std::string idempotency_key(std::string_view fingerprint, std::string_view recipient);

// Receiver/command text for a reason: control characters -> ' ', runs of blanks collapsed,
// invalid UTF-8 replaced, at most max_len bytes (then "...").
std::string reason_text(std::string_view raw, std::size_t max_len = 300);

// The next retry delay the engine should use: exponential from `base` doubling per attempt up
// to `max`, at least `retry_after` (capped at `max`... a receiver asking for more waits up to
// one day), then spread by +-jitter (jitter_u01 in [0,1): the caller's random draw, so tests
// are deterministic). attempt counts from 1.
std::chrono::seconds retry_delay(int attempt, std::chrono::seconds base, std::chrono::seconds max,
                                 std::optional<std::chrono::seconds> retry_after, double jitter_u01,
                                 double jitter = 0.2);

// At most `limit` holders per key at once across processes: flock() on <dir>/<key-hash>.N.
class slot_guard {
  public:
    slot_guard() = default;
    slot_guard(slot_guard&& o) noexcept;
    slot_guard& operator=(slot_guard&& o) noexcept;
    slot_guard(const slot_guard&) = delete;
    slot_guard& operator=(const slot_guard&) = delete;
    ~slot_guard() noexcept;
    // Waits up to `wait` for a free slot (polling); nullopt: all busy. Throws
    // std::system_error when the slot folder cannot be used.
    static std::optional<slot_guard> acquire(const std::filesystem::path& dir, std::string_view key,
                                             unsigned limit, std::chrono::milliseconds wait);
    int slot() const noexcept { return slot_; }

  private:
    int fd_ = -1;
    int slot_ = -1;
};

// slot_guard::acquire, except that a slot folder that cannot be used (run_dir not writable)
// never stops mail: `bounded` becomes false, the delivery runs unbounded, a warning is logged
// once per process.
std::optional<slot_guard> acquire_slot(const std::filesystem::path& dir, std::string_view key,
                                       unsigned limit, std::chrono::milliseconds wait,
                                       bool& bounded);

// ---- webhook ------------------------------------------------------------------------------

struct webhook_options {
    std::string url;  // without the fragment
    enum class format { raw, json } body = format::raw;
    std::uint64_t inline_max = 0;  // JSON: attachments up to this size inline (base64); 0: none
    enum class auth { none, bearer, basic } auth = auth::none;
    std::string user;  // basic auth user name (the password is the target secret)
    bool sign = true;  // X-Mx-Signature when a secret is set
    std::chrono::milliseconds timeout{30000};
    std::chrono::milliseconds connect_timeout{10000};
    unsigned concurrency = 4;
    std::string ca_file;                      // extra CA bundle; empty: the system store
    std::size_t max_response = 4096;          // bytes of the receiver's answer kept
    std::uint64_t max_json_bytes = 64 << 20;  // JSON bodies larger than this: permanent 5.3.4

    std::string describe_url() const;  // scheme://host[:port]/path, no userinfo, no query
};

// "URL[#key=value&...]" with defaults from the config's [targets] section. Fragment keys:
// format=raw|json, inline_max=BYTES, auth=none|bearer|basic, user=NAME, sign=0|1,
// timeout=SECONDS, connect_timeout=SECONDS, concurrency=N, ca=PATH. Throws target_error.
webhook_options parse_webhook_spec(std::string_view rest, const config_reader& targets);

// HMAC-SHA256(secret, timestamp + "." + body) as lower-case hex. Throws target_error.
std::string webhook_signature(std::string_view secret, std::int64_t timestamp,
                              std::string_view body);

struct http_answer {
    long status = 0;    // 0: no HTTP answer (see curl_code)
    int curl_code = 0;  // CURLcode
    std::string error;  // curl's text for transport failures
    std::string body;   // first max_response bytes of the answer
    std::string retry_after_header;
};
// The importer's verdict on an HTTP answer; `now` resolves HTTP-date Retry-After values.
result classify_http(const http_answer& a, const std::string& where, std::time_t now);
// Retry-After: delta-seconds or an HTTP-date; nullopt when absent or unreadable.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view v, std::time_t now);

struct json_body_options {
    std::uint64_t inline_max = 0;
    std::chrono::milliseconds timeout{30000};
    std::uint64_t memory_limit = std::uint64_t{1} << 30;
};
// The JSON document for a delivery (envelope, connector, mailbox, decoded headers, text/html
// bodies, attachments). The MIME walk runs in a forked child with limits; the result's kind is
// imported (body filled) or a failure for the delivery. key = idempotency key.
result build_json_body(const delivery& d, const std::string& key, const json_body_options& o,
                       std::string& body);
// The converter the child runs (message_json.hpp: message_document). Registered by programs
// that link mx_message_json (mx-importer, tests); without one the child execs
// `mx-importer --message-json` from the running executable's directory (mxctl).
using message_converter = std::string (*)(std::string_view data, std::uint64_t inline_max,
                                          nlohmann::json top);
void set_message_converter(message_converter fn);
// message_to_json for a file, in a forked child under the limits of `o` (mxctl failed show:
// the admin sees what an application would). nullopt with `why` when it cannot be converted.
std::optional<nlohmann::json> message_file_to_json(const std::filesystem::path& file,
                                                   const json_body_options& o, std::string& why);

std::unique_ptr<import_target> make_webhook_target(const config& cfg, std::string_view rest);

// ---- exec ---------------------------------------------------------------------------------

// Splits a command line without a shell: blanks separate words; '...' is literal; "..." allows
// \" and \\; a backslash outside quotes escapes the next character. No expansion of any kind.
// Throws target_error on an unterminated quote or an empty command.
std::vector<std::string> split_command(std::string_view command);

struct exec_options {
    std::vector<std::string> argv;  // argv[0] absolute
    std::chrono::milliseconds timeout{60000};
    std::size_t max_output = 4096;  // bytes of stdout+stderr kept for the reason
    unsigned concurrency = 4;
};
exec_options parse_exec_spec(std::string_view rest, const config_reader& targets);

struct exec_outcome {
    int wait_status = 0;  // as waitpid() gives it
    bool timed_out = false;
    std::string output;  // first max_output bytes of stdout+stderr
    std::uint64_t output_total = 0;
    std::string spawn_error;  // non-empty: the command could not be started
};
// Runs argv with `stdin_path` on stdin and exactly `env` as environment; stdout and stderr go
// into one bounded capture; on timeout the whole process group gets SIGTERM, then SIGKILL.
exec_outcome run_command(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                         const std::filesystem::path& stdin_path, std::chrono::milliseconds timeout,
                         std::size_t max_output);
result classify_exit(const exec_outcome& o, const std::string& what);

std::unique_ptr<import_target> make_exec_target(const config& cfg, std::string_view rest);

}  // namespace mx::importer
