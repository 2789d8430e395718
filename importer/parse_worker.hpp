// parse_worker: runs message_parse in a separate process so that a parser crash or hang on a
// hostile file can never take mx-importer down.
//
// Protocol (one JSON object per line, in order): request {"path": P}; reply
// {"ok":true,"size":N,"mtime":T,"fingerprint":"<sha256 hex>","info":{...message_info...}} or
// {"ok":false,"errno":E,"error":"open: ..."} when the file cannot be read.
// Promises: parse_batch() returns one result per path, in order. A worker that dies (signal,
// exit) or does not answer within the timeout is killed and restarted; the request it was
// working on gets status crashed/timeout, the others are re-sent to the new worker. The worker
// has a memory limit (RLIMIT_AS) and dies with its parent (PR_SET_PDEATHSIG).
// Security: the worker only reads the file it is given (O_NOFOLLOW, read-only mapping) and
// writes nothing but its reply. Fault injection for tests (a header "X-Mx-Test-Fault: crash" or
// "hang") is honoured only when MX_IMPORTER_FAULT_INJECTION=1 is in the environment.
#pragma once

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "message_parse.hpp"

namespace mx::importer {

struct parse_result {
    enum class status { ok, io_error, crashed, timeout };
    status st = status::crashed;
    int err = 0;        // errno for io_error
    std::string error;  // human text
    std::uint64_t size = 0;
    std::int64_t mtime = 0;
    std::string fingerprint;
    message_info info;
};

struct worker_options {
    // Empty: fork() and run the worker loop in the child (tests). Otherwise fork+exec this
    // binary with "--parse-worker" (the daemon: a clean address space per worker).
    std::string exec_path;
    std::chrono::milliseconds base_timeout{10000};
    std::chrono::milliseconds timeout_per_mb{1000};
    std::uint64_t memory_limit = std::uint64_t{1} << 30;  // RLIMIT_AS of the worker
    parse_limits limits;
};

class parse_worker {
  public:
    explicit parse_worker(worker_options opts);
    parse_worker(const parse_worker&) = delete;
    parse_worker& operator=(const parse_worker&) = delete;
    ~parse_worker() noexcept;

    // envelope_only: fingerprint, header scan and envelope only — no mimetic, no GMime (the
    // fallback after the full parse crashed twice, so the bounce still reaches the sender).
    std::vector<parse_result> parse_batch(const std::vector<std::filesystem::path>& paths,
                                          const std::vector<std::uint64_t>& sizes,
                                          bool envelope_only = false);
    parse_result parse(const std::filesystem::path& path, std::uint64_t size_hint = 0,
                       bool envelope_only = false);
    std::uint64_t restarts() const { return restarts_; }
    pid_t pid() const { return pid_; }

  private:
    void start();
    void stop() noexcept;
    worker_options opts_;
    pid_t pid_ = -1;
    int to_worker_ = -1;    // we write requests
    int from_worker_ = -1;  // we read replies
    std::string rbuf_;
    std::uint64_t restarts_ = 0;
};

// The worker's main loop (reads requests on in_fd, replies on out_fd until EOF).
int parse_worker_main(int in_fd, int out_fd, const parse_limits& limits);

// Reads and analyses one file in this process (what the worker does for one request).
nlohmann::json analyse_file(const std::string& path, const parse_limits& limits,
                            bool envelope_only = false);

}  // namespace mx::importer
