// bounce_tool: test driver that runs the real bounce sender (importer/bounce_sender.cpp)
// outside mx-importer, with an optional fixed clock, for the integration tests.
//   bounce_tool --config C run-once [--now T]   -> JSON run statistics
//   bounce_tool --config C loop [--interval-ms N] -> run_once forever (kill -9 tests)
//   bounce_tool --config C spool JOB.json         -> spool_bounce (the importer's call)
#include <chrono>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>

#include "bounce_sender.hpp"
#include "global/logging.hpp"
#include "global/shm_state.hpp"
#include "util/fs.hpp"

int main(int argc, char** argv) {
    CLI::App app{"bounce_tool"};
    std::string config_path, job_file;
    std::int64_t now = 0;
    int interval_ms = 200;
    app.add_option("--config", config_path)->required();
    auto* once = app.add_subcommand("run-once");
    once->add_option("--now", now);
    auto* loop = app.add_subcommand("loop");
    loop->add_option("--interval-ms", interval_ms);
    auto* spool = app.add_subcommand("spool");
    spool->add_option("job", job_file)->required();
    app.require_subcommand(1);
    CLI11_PARSE(app, argc, argv);
    try {
        auto cfg = mx::load_config(config_path);
        mx::setup_logging(cfg, "bounce_tool");
        if (*spool) {
            auto job =
                mx::bounce_job_from_json(nlohmann::json::parse(mx::util::read_file(job_file)));
            std::cout << mx::spool_bounce(cfg, job).string() << "\n";
            return 0;
        }
        auto shm = mx::shm_state::attach(cfg);
        mx::bounce_sender::clock_fn clock;
        if (now > 0) clock = [now] { return now; };
        mx::bounce_sender s(cfg, nullptr, &shm, nullptr, clock);
        do {
            auto st = s.run_once();
            if (*once) {
                std::cout << nlohmann::json{{"sent", st.sent},       {"suppressed", st.suppressed},
                                            {"failed", st.failed},   {"deferred", st.deferred},
                                            {"waiting", st.waiting}, {"bad", st.bad}}
                                 .dump()
                          << "\n";
                return 0;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
        } while (true);
    } catch (const std::exception& e) {
        std::cerr << "bounce_tool: " << e.what() << "\n";
        return 1;
    }
}
