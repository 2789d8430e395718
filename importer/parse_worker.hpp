// parse_worker: runs message_parse in a separate, sandboxed process so that a parser crash,
// hang or exploit on a hostile file can never take mx-importer down nor reach its secrets.
//
// Protocol: requests go over a SOCK_SEQPACKET socket (the worker's fd 0): a message is one
// byte ('f' full analysis, 'e' envelope only), then per file 16 bytes (size, mtime as the
// claim's lstat saw them; mtime 0: unknown, the worker fstat()s), carrying up to
// max_fds_per_request already opened files as SCM_RIGHTS (one message, not one per file: two
// system calls fewer per file). The parent opens every file itself
// (O_RDONLY|O_NOFOLLOW|O_NONBLOCK), so the worker never needs open(). Replies are JSON lines on a
// pipe (the worker's fd 1): first a hello
// {"sandbox":true,"syscalls":N} or
// {"sandbox":false,"error":"..."} once the worker is ready, then per request
// {"ok":true,"size":N,"mtime":T,"fingerprint":"<sha256 hex>","info":{...message_info...}} or
// {"ok":false,"errno":E,"error":"fstat: ..."}.
// Promises: parse_batch() returns one result per path, in order. A file the parent cannot open
// is an io_error with its errno (ENOENT, ELOOP for a symlink, ...). A worker that dies (signal,
// exit, killed by the sandbox with SIGSYS) or does not answer within the timeout is killed
// and restarted; the request it was working on gets status crashed/timeout (that file alone),
// the others are re-sent to the new worker. The worker has a memory limit (RLIMIT_AS) and dies
// with its parent (PR_SET_PDEATHSIG).
// Security: before reading any request the worker loads every charset converter and library
// state it could need, then (worker_options::sandbox, default on) locks itself into a
// seccomp-bpf filter (util/sandbox.hpp, list in parse_worker.cpp): read/fstat/mmap on the fds
// it is given, recvmsg on fd 0, write on fds 1 and 2, memory management, exit. Any other
// system call (open, socket, exec, kill of another process, ...) kills the worker with SIGSYS.
// If the kernel refuses the filter the worker still runs and the parent logs an error once.
// Limit: a worker taken over by an exploit can still answer falsely for the files it is given
// next (until it is restarted); it cannot read anything it is not given nor write state.
// Fault injection for tests (headers "X-Mx-Test-Fault: crash", "hang" or "open <path>", the
// last making the worker try to open and read a file like an exploit would) is honoured only
// when MX_IMPORTER_FAULT_INJECTION=1 is in the environment.
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
    int err = 0;          // errno for io_error
    int term_signal = 0;  // crashed: the signal that ended the worker (SIGSYS: the sandbox)
    std::string error;    // human text
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
    bool sandbox = true;  // seccomp-bpf filter in the worker (see above)
};

// Files per request message (the worker's RLIMIT_NOFILE leaves room for exactly these).
inline constexpr std::size_t max_fds_per_request = 16;

class parse_worker {
  public:
    // wait = false: the worker is started but its hello not awaited yet (ready() does it), so
    // several workers start side by side (each prepares ~250 charset converters first).
    explicit parse_worker(worker_options opts, bool wait = true);
    parse_worker(const parse_worker&) = delete;
    parse_worker& operator=(const parse_worker&) = delete;
    ~parse_worker() noexcept;

    // envelope_only: fingerprint, header scan and envelope only — no mimetic, no GMime (the
    // fallback after the full parse crashed twice, so the bounce still reaches the sender).
    // sizes: as claimed (0: unknown); mtimes (optional): non-zero when the claim's lstat saw
    // a regular file of that size and mtime in our private work folder, so the worker need
    // not fstat it.
    std::vector<parse_result> parse_batch(const std::vector<std::filesystem::path>& paths,
                                          const std::vector<std::uint64_t>& sizes,
                                          bool envelope_only = false,
                                          const std::vector<std::int64_t>& mtimes = {});
    parse_result parse(const std::filesystem::path& path, std::uint64_t size_hint = 0,
                       bool envelope_only = false);
    // Waits for the hello of a worker started with wait = false; throws when it never comes.
    void ready();
    std::uint64_t restarts() const { return restarts_; }
    pid_t pid() const { return pid_; }
    // Whether the running worker reported its seccomp filter as loaded.
    bool sandboxed() const { return sandboxed_; }

  private:
    void start() {
        spawn();
        await_hello();
    }
    void spawn();
    void await_hello();
    void stop() noexcept;
    worker_options opts_;
    pid_t pid_ = -1;
    int to_worker_ = -1;    // we write requests
    int from_worker_ = -1;  // we read replies
    std::string rbuf_;
    std::uint64_t restarts_ = 0;
    bool sandboxed_ = false;
    bool hello_pending_ = false;
};

// The worker's main loop: prepares, enters the sandbox (when asked), says hello, then reads
// requests on in_fd (the SOCK_SEQPACKET socket) and replies on out_fd until EOF.
int parse_worker_main(int in_fd, int out_fd, const parse_limits& limits, bool sandbox = true);

// Prepares this process for parsing once: every charset converter module loaded, the
// libraries' lazy state initialised (so nothing needs open() later, under the sandbox). The
// worker calls it before its filter; fork mode calls it in the parent, whose children inherit it.
void prepare_worker_once(const parse_limits& limits);

// Analyses one already open file in this process (what the worker does for one request).
// known_size/known_mtime (known_mtime != 0): what the parent's lstat saw, instead of an fstat.
nlohmann::json analyse_fd(int fd, const parse_limits& limits, bool envelope_only = false,
                          std::uint64_t known_size = 0, std::int64_t known_mtime = 0);
// The same for a path (opened O_NOFOLLOW here; tests and tools, never inside the worker).
nlohmann::json analyse_file(const std::string& path, const parse_limits& limits,
                            bool envelope_only = false);

}  // namespace mx::importer
