// util::signal_pipe: signals arrive as numbers on a pipe, none lost while blocked.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <thread>

#include "util/signals.hpp"

using namespace std::chrono_literals;

TEST_CASE("signals become numbers on the pipe, in order, none lost", "[signals]") {
    mx::util::signal_pipe sigs({SIGUSR1, SIGUSR2});
    // Blocked until start(): a signal sent now waits and is delivered by start().
    ::kill(::getpid(), SIGUSR1);
    CHECK(sigs.take() == 0);
    sigs.start();
    CHECK(sigs.wait(1s) == SIGUSR1);
    CHECK(sigs.take() == 0);
    CHECK(sigs.wait(10ms) == 0);  // nothing waiting: a timeout, not a signal
    ::kill(::getpid(), SIGUSR2);
    mx::util::signal_pipe::post(SIGUSR1);
    CHECK(sigs.wait(1s) == SIGUSR2);
    CHECK(sigs.wait(1s) == SIGUSR1);
    // A thread created after the constructor inherits the block: the owner's thread gets it.
    int got = 0;
    std::thread t([&] { ::kill(::getpid(), SIGUSR2); });
    t.join();
    got = sigs.wait(1s);
    CHECK(got == SIGUSR2);
    CHECK_THROWS_AS(mx::util::signal_pipe({SIGUSR1}), std::logic_error);  // one per process
}

TEST_CASE("after the owner is gone a new pipe can be made", "[signals]") {
    { mx::util::signal_pipe a({SIGUSR1}); }
    mx::util::signal_pipe b({SIGUSR1});
    b.start();
    ::kill(::getpid(), SIGUSR1);
    CHECK(b.wait(1s) == SIGUSR1);
}
