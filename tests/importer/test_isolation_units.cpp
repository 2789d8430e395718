// Units of the isolation machinery: delivery_lanes (serial per key, parallel across keys,
// queued jobs dropped at shutdown) and target_health (the circuit breaker's states). No clock
// assertions: ordering through latches, the breaker driven with explicit times.
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "delivery_lanes.hpp"
#include "target_health.hpp"

using namespace mx::importer;

TEST_CASE("delivery_lanes: a blocked key does not hold up another key", "[lanes]") {
    std::promise<void> release;
    auto gate = release.get_future().share();
    std::atomic<int> fast_done{0};
    std::promise<void> fast_all;
    {
        delivery_lanes lanes(4);
        lanes.submit("slow", [gate] { gate.wait(); });
        for (int i = 0; i < 10; ++i)
            lanes.submit("fast", [&, i] {
                if (++fast_done == 10) fast_all.set_value();
                (void)i;
            });
        // All of "fast" completes while "slow" is still blocked.
        REQUIRE(fast_all.get_future().wait_for(std::chrono::seconds(60)) ==
                std::future_status::ready);
        CHECK(fast_done == 10);
        release.set_value();
    }
}

TEST_CASE("delivery_lanes: one key runs in order, one job at a time", "[lanes]") {
    std::mutex mu;
    std::vector<int> order;
    std::atomic<int> running{0}, max_running{0};
    {
        delivery_lanes lanes(4);
        for (int i = 0; i < 50; ++i)
            lanes.submit("k", [&, i] {
                int r = ++running;
                int m = max_running.load();
                while (r > m && !max_running.compare_exchange_weak(m, r)) {
                }
                {
                    std::lock_guard lk(mu);
                    order.push_back(i);
                }
                --running;
            });
        while (true) {
            std::lock_guard lk(mu);
            if (order.size() == 50) break;
        }
    }
    CHECK(max_running == 1);
    for (int i = 0; i < 50; ++i) CHECK(order[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("delivery_lanes: shutdown waits for the running job and drops the queued ones",
          "[lanes]") {
    std::atomic<int> ran{0};
    std::promise<void> started;
    {
        delivery_lanes lanes(2);
        lanes.submit("k", [&] {
            started.set_value();
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            ++ran;
        });
        for (int i = 0; i < 5; ++i) lanes.submit("k", [&] { ++ran; });
        started.get_future().wait();
    }
    CHECK(ran == 1);
}

namespace {
result temp(std::optional<std::chrono::seconds> ra = std::nullopt) {
    result r{result_kind::temporary, "4.4.1", "connection timed out", {}};
    r.retry_after = ra;
    return r;
}
result ok() {
    return {result_kind::imported, "2.0.0", "200", "k"};
}
}  // namespace

TEST_CASE("target_health: opens after N failures, probes once, closes on success", "[breaker]") {
    breaker_settings s;
    s.failures = 3;
    s.base = std::chrono::seconds(10);
    s.max = std::chrono::seconds(40);
    target_health h(s);
    const std::string t = "webhook:http://x/";
    std::int64_t now = 1000;
    CHECK_FALSE(h.admit(t, "webhook:x", now));
    h.record(t, "webhook:x", temp(), now);
    h.record(t, "webhook:x", temp(), now);
    CHECK_FALSE(h.paused(t, now));
    h.record(t, "webhook:x", temp(), now);  // third: open for 10 s
    REQUIRE(h.paused(t, now));
    CHECK(*h.paused(t, now) == 1010);
    CHECK(h.admit(t, "webhook:x", now + 5).value() == 1010);
    auto snap = h.snapshot(now);
    REQUIRE(snap["targets"].size() == 1);
    CHECK(snap["targets"][0]["state"] == "paused");
    CHECK(snap["targets"][0]["since"] == 1000);
    // Due: exactly one probe; the others wait.
    CHECK_FALSE(h.admit(t, "webhook:x", 1010));
    CHECK(h.admit(t, "webhook:x", 1010).has_value());
    // The probe fails: paused again, twice as long.
    h.record(t, "webhook:x", temp(), 1011);
    CHECK(h.paused(t, 1011).value() == 1031);
    // Next probe succeeds: closed, nothing listed.
    CHECK_FALSE(h.admit(t, "webhook:x", 1031));
    h.record(t, "webhook:x", ok(), 1032);
    CHECK_FALSE(h.paused(t, 1032));
    CHECK_FALSE(h.admit(t, "webhook:x", 1032));
    CHECK(h.snapshot(1032)["targets"].empty());
}

TEST_CASE("target_health: Retry-After lengthens the pause; waiting files are counted",
          "[breaker]") {
    breaker_settings s;
    s.failures = 1;
    s.base = std::chrono::seconds(10);
    s.max = std::chrono::seconds(40);
    target_health h(s);
    h.record("a", "webhook:x", temp(std::chrono::seconds(600)), 100);
    CHECK(h.paused("a", 100).value() == 700);
    h.waiting("a", "/drop/.work/h/n,1", true);
    h.waiting("a", "/drop/.work/h/n,2", true);
    h.waiting("a", "/drop/.work/h/n,1", false);
    auto lines = target_health_lines(h.snapshot(100));
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("paused since") != std::string::npos);
    CHECK(lines[0].find("1 waiting") != std::string::npos);
    CHECK(target_health_prometheus(h.snapshot(100)).find("mxconnector_target_paused") !=
          std::string::npos);
    // A permanent answer proves the target alive.
    h.record("a", "webhook:x", {result_kind::permanent, "5.7.1", "403", {}}, 101);
    CHECK_FALSE(h.paused("a", 101));
}

TEST_CASE("target_health: breaker_failures = 0 never pauses", "[breaker]") {
    breaker_settings s;
    s.failures = 0;
    target_health h(s);
    for (int i = 0; i < 100; ++i) h.record("a", "webhook:x", temp(), 1);
    CHECK_FALSE(h.paused("a", 1));
}
