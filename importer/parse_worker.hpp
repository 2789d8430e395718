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
#include <memory>
#include <mutex>
#include <string>
#include <thread>
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

class worker_factory;

struct worker_options {
    // Empty: fork() and run the worker loop in the child (tests). Otherwise fork+exec this
    // binary with "--parse-worker" (a clean address space per worker).
    std::string exec_path;
    // Exec mode with a factory (the daemon): workers are forked from it, prepared, instead of
    // exec'd; exec_path is the fallback when the factory cannot.
    std::shared_ptr<worker_factory> factory;
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
    void adopt(pid_t pid, const int req[2], const int rep[2]);  // our ends of a started worker
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
    bool after_failure_ = false;  // the next spawn replaces a worker that crashed or hung
};

// worker_factory: one process that execs this binary once with "--parse-worker-factory",
// prepares itself like a worker (every charset converter loaded, the libraries warmed up; no
// sandbox: it never sees mail) and then forks each parse worker on request. A worker so starts
// in about a millisecond instead of an exec plus ~250 converter modules (~70 ms of CPU), at
// the daemon's start and after every crash a hostile file causes; the workers share the
// prepared pages copy-on-write.
// The worker is cloned with CLONE_PARENT: it is the daemon's own child, so waitpid, kill and
// PR_SET_PDEATHSIG work exactly as for an exec'd worker; the factory is only its template.
// Protocol (SOCK_SEQPACKET, the factory's fd 0): the factory's hello {"threads":N}, then per
// request 8 bytes (the worker's RLIMIT_AS) with SCM_RIGHTS {request socket, reply pipe} (the
// worker's fd 0 and 1), answered with 4 bytes: the worker's pid, or -errno; or the 1 byte "R":
// the factory execs itself again and says hello again.
// Security: workers forked from one factory share its address-space layout (as Android's
// zygote children do). After a worker crashed or hung, the next one is forked from a renewed
// factory (a fresh exec, a new layout), so what a failed attempt learnt of one worker's layout
// does not carry over. The factory never reads mail or secrets: only its socket and fd 2 are
// open in it.
// Promises: spawn() returns -1 (the caller execs the worker itself) when the factory cannot
// serve. A factory that dies or does not answer (10 s; 30 s for a hello) is started again, up
// to twice per call, but only from the thread that created it (a worker's PR_SET_PDEATHSIG
// follows the thread that started the factory, which must outlive the workers); one that
// cannot start twice in a row, or reports more than one thread (forking a multi-threaded
// process is unsafe), is given up for good: every worker is then exec'd.
class worker_factory {
  public:
    explicit worker_factory(worker_options opts);
    worker_factory(const worker_factory&) = delete;
    worker_factory& operator=(const worker_factory&) = delete;
    ~worker_factory() noexcept;
    // A worker on these fds, or -1 (see above). The fds stay the caller's to close. renew:
    // the factory first execs itself again (after a worker's crash or hang).
    pid_t spawn(int request_fd, int reply_fd, bool renew = false);
    // Workers forked so far, renewals, and the factory's pid (-1: none running); for tests.
    std::uint64_t spawned() const;
    std::uint64_t renewed() const;
    pid_t pid() const;

  private:
    bool start();
    bool start_or_give_up();  // start() twice; else usable_ = false, for good
    bool await_hello();
    void lost() noexcept;  // no answer: reap it if it ended (logged), stop it
    void stop() noexcept;
    worker_options opts_;
    std::thread::id owner_ = std::this_thread::get_id();
    mutable std::mutex mu_;
    pid_t pid_ = -1;
    int sock_ = -1;
    bool usable_ = true;
    std::uint64_t spawned_ = 0;
    std::uint64_t renewed_ = 0;
};

// The factory's loop (the "--parse-worker-factory" process): prepares, says hello on sock,
// forks a worker per request until EOF.
int parse_worker_factory_main(int sock, const parse_limits& limits, bool sandbox = true);

// The worker's main loop: prepares, enters the sandbox (when asked), says hello, then reads
// requests on in_fd (the SOCK_SEQPACKET socket) and replies on out_fd until EOF.
int parse_worker_main(int in_fd, int out_fd, const parse_limits& limits, bool sandbox = true);

// The command line of an exec'd parse process, "<path> <role> --max-header-bytes N
// [--no-parse-sandbox]" (role: "--parse-worker" or "--parse-worker-factory"), built before
// fork(): the child of a multi-threaded daemon must not allocate before its exec.
class parse_process_exec {
  public:
    parse_process_exec(std::string path, const char* role, std::size_t max_header_bytes,
                       bool sandbox)
        : path_(std::move(path)), header_bytes_(std::to_string(max_header_bytes)) {
        argv_[0] = path_.c_str();
        argv_[1] = role;
        argv_[2] = "--max-header-bytes";
        argv_[3] = header_bytes_.c_str();
        argv_[4] = sandbox ? nullptr : "--no-parse-sandbox";
        argv_[5] = nullptr;
    }
    parse_process_exec(const parse_process_exec&) = delete;  // argv_ points into this object
    parse_process_exec& operator=(const parse_process_exec&) = delete;
    // execv(); on failure the process ends with status 127.
    [[noreturn]] void run() const noexcept;

  private:
    std::string path_, header_bytes_;
    const char* argv_[6];
};

// A freshly forked worker (or factory) process: default signal dispositions and an empty mask
// (a crash must end it, whatever the daemon installed), no core dumps, RLIMIT_AS when usable.
void reset_worker_process(std::uint64_t memory_limit);
// A freshly forked worker, whether forked by the daemon or by the factory: dies with `parent`
// (PR_SET_PDEATHSIG; ends at once if parent is already gone), request_fd and reply_fd become
// its fds 0 and 1, every other fd above 2 closed, then reset_worker_process().
void become_worker_process(pid_t parent, int request_fd, int reply_fd, std::uint64_t memory_limit);

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
