#include "util/signals.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <stdexcept>
#include <system_error>

namespace mx::util {
namespace {

int g_pipe[2] = {-1, -1};
std::atomic<bool> g_taken{false};

extern "C" void on_signal(int sig) {
    int saved = errno;
    unsigned char c = static_cast<unsigned char>(sig);
    (void)!::write(g_pipe[1], &c, 1);  // full pipe: enough signals are waiting already
    errno = saved;
}

sigset_t set_of(const std::vector<int>& signals) {
    sigset_t s;
    sigemptyset(&s);
    for (int sig : signals) sigaddset(&s, sig);
    return s;
}

}  // namespace

signal_pipe::signal_pipe(std::initializer_list<int> signals) : signals_(signals) {
    if (g_taken.exchange(true)) throw std::logic_error("signal_pipe: one per process");
    if (::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        g_taken = false;
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    sigset_t s = set_of(signals_);
    pthread_sigmask(SIG_BLOCK, &s, nullptr);
}

signal_pipe::~signal_pipe() {
    if (started_) {
        struct sigaction sa {};
        sa.sa_handler = SIG_DFL;
        sigemptyset(&sa.sa_mask);
        for (int sig : signals_) ::sigaction(sig, &sa, nullptr);
    }
    for (int& fd : g_pipe) {
        ::close(fd);
        fd = -1;
    }
    g_taken = false;
}

void signal_pipe::start() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int sig : signals_)
        if (::sigaction(sig, &sa, nullptr) != 0)
            throw std::system_error(errno, std::generic_category(), "sigaction");
    started_ = true;
    sigset_t s = set_of(signals_);
    pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
}

int signal_pipe::fd() const noexcept {
    return g_pipe[0];
}

int signal_pipe::take() noexcept {
    unsigned char c = 0;
    return ::read(g_pipe[0], &c, 1) == 1 ? c : 0;
}

int signal_pipe::wait(std::chrono::milliseconds timeout) noexcept {
    pollfd p{g_pipe[0], POLLIN, 0};
    auto ms =
        timeout.count() < 0 ? -1 : static_cast<int>(std::min<long long>(timeout.count(), INT_MAX));
    if (::poll(&p, 1, ms) <= 0) return 0;
    return take();
}

void signal_pipe::post(int sig) noexcept {
    if (g_pipe[1] >= 0) on_signal(sig);
}

}  // namespace mx::util
