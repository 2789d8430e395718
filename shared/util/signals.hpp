// signals: THE way a daemon takes SIGTERM / SIGINT / SIGHUP — a self-pipe.
//
// Promises: the constructor blocks the given signals in the calling thread, so threads created
// afterwards inherit the mask and never take them; start() installs handlers that only write
// the signal's number to a non-blocking pipe and unblocks the signals in the calling thread,
// which from then on is the one that receives them (the kernel delivers a process signal to a
// thread that does not block it). The owner waits on fd() in its own poll loop or with wait()
// and reads what arrived with take(): no work happens in signal context, and a signal that
// arrives while the owner is busy is kept in the pipe, not lost. One instance per process (a
// second one throws); the destructor restores the default dispositions.
// Security notes: the handler is async-signal-safe (write(2) and errno only); the pipe is
// O_CLOEXEC, so programs the daemon starts do not inherit it.
#pragma once

#include <chrono>
#include <initializer_list>
#include <vector>

namespace mx::util {

class signal_pipe {
  public:
    explicit signal_pipe(std::initializer_list<int> signals);
    ~signal_pipe();
    signal_pipe(const signal_pipe&) = delete;
    signal_pipe& operator=(const signal_pipe&) = delete;

    // Handlers in, signals unblocked in this thread. Throws std::system_error (pipe2).
    void start();
    // Readable when a signal is waiting.
    int fd() const noexcept;
    // The next signal that arrived, or 0 when none is waiting. Never blocks.
    int take() noexcept;
    // Waits at most `timeout` (negative: forever) for a signal: its number, or 0.
    int wait(std::chrono::milliseconds timeout) noexcept;
    // Queues `sig` as if it had arrived (a stop request from code, e.g. tests). Async-safe.
    static void post(int sig) noexcept;

  private:
    std::vector<int> signals_;
    bool started_ = false;
};

}  // namespace mx::util
