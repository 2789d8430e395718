// milter_bench: RCPT decisions per second and latency percentiles through the milter protocol.
// N connections (one thread each) negotiate, CONNECT, MAIL, then send RCPTs for
// "u<i>@<domain>" with i uniformly random in [0, 2*mailboxes): half known (accept), half
// unknown (550) — every reply is checked against that expectation (a wrong one fails the run).
// A new transaction (ABORT + MAIL) every 50 RCPTs; with SESSION_RCPTS > 0 a new milter
// session (close, connect, negotiate, CONNECT, MAIL) every SESSION_RCPTS RCPTs instead, as
// Postfix opens one per SMTP session (libmilter then starts a thread per session).
// Usage: milter_bench SOCKET CONNECTIONS TOTAL_RCPTS MAILBOXES [DOMAIN [SESSION_RCPTS]]
// Prints one JSON line: {"connections":N,"rcpts":T,"seconds":S,"per_second":R,"p50_us":..,
// "p99_us":..,"wrong":0}
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "global/milter_client.hpp"

using namespace mx::milter_proto;
using clock_type = std::chrono::steady_clock;

int main(int argc, char** argv) {
    if (argc < 5) {
        std::fprintf(stderr,
                     "usage: milter_bench SOCKET CONNECTIONS TOTAL_RCPTS MAILBOXES [DOMAIN "
                     "[SESSION_RCPTS]]\n");
        return 2;
    }
    std::string sock = argv[1];
    int conns = std::atoi(argv[2]);
    long total = std::atol(argv[3]);
    long boxes = std::atol(argv[4]);
    std::string domain = argc > 5 ? argv[5] : "bench.test";
    long session_rcpts = argc > 6 ? std::atol(argv[6]) : 0;
    long per = total / conns;
    std::vector<std::vector<float>> lat(static_cast<std::size_t>(conns));
    std::atomic<long> wrong{0}, errors{0};
    auto t0 = clock_type::now();
    std::vector<std::thread> th;
    for (int c = 0; c < conns; ++c) {
        th.emplace_back([&, c] {
            try {
                std::mt19937_64 rng(static_cast<unsigned long>(c) * 7919 + 1);
                auto& l = lat[static_cast<std::size_t>(c)];
                l.reserve(static_cast<std::size_t>(per));
                auto open_session = [&] {
                    auto cl = client::connect_unix(sock, 30000);
                    cl.negotiate();
                    cl.connect("bench" + std::to_string(c), "192.0.2.9");
                    cl.mail({"<s@sender.test>"});
                    return cl;
                };
                auto cl = open_session();
                for (long i = 0; i < per; ++i) {
                    if (session_rcpts > 0 && i > 0 && i % session_rcpts == 0) {
                        cl.quit();
                        cl = open_session();
                    } else if (i > 0 && i % 50 == 0) {
                        cl.abort();
                        cl.mail({"<s@sender.test>"});
                    }
                    long n = static_cast<long>(rng() % static_cast<unsigned long>(2 * boxes));
                    std::string arg = "<u" + std::to_string(n) + "@" + domain + ">";
                    auto s = clock_type::now();
                    auto r = cl.rcpt(arg);
                    auto e = clock_type::now();
                    l.push_back(std::chrono::duration<float, std::micro>(e - s).count());
                    bool known = n < boxes;
                    if (known ? r.cmd != 'c' : r.data.rfind("550 5.1.1", 0) != 0) ++wrong;
                }
                cl.quit();
            } catch (const std::exception& ex) {
                std::fprintf(stderr, "connection %d: %s\n", c, ex.what());
                ++errors;
            }
        });
    }
    for (auto& t : th) t.join();
    double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    std::vector<float> all;
    for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
    std::sort(all.begin(), all.end());
    auto pct = [&](double p) {
        if (all.empty()) return 0.0f;
        return all[std::min(all.size() - 1, static_cast<std::size_t>(p * all.size()))];
    };
    std::printf(
        "{\"connections\":%d,\"mailboxes\":%ld,\"rcpts\":%zu,\"seconds\":%.3f,"
        "\"per_second\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"wrong\":%ld,\"errors\":%ld}\n",
        conns, boxes, all.size(), secs, all.size() / secs, pct(0.50), pct(0.99), wrong.load(),
        errors.load());
    return (wrong.load() == 0 && errors.load() == 0) ? 0 : 1;
}
