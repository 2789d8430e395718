// console server: the HTTP(S) listener. Binds (and reads the TLS key) as root when started as
// root, then becomes the daemon account for good before it reads any state; stops on
// SIGTERM/SIGINT; samples the counters into the history ring on its own thread.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <iostream>
#include <memory>

#include "console.hpp"
#include "global/logging.hpp"
#include "ops/console_users.hpp"
#include "util/fs.hpp"
#include "util/privdrop.hpp"
#include "util/signals.hpp"

namespace mx::console {
namespace {

std::unique_ptr<httplib::Server> make_server(const console_settings& s) {
    if (s.tls_cert.empty()) return std::make_unique<httplib::Server>();
    auto svr = std::make_unique<httplib::SSLServer>(s.tls_cert.c_str(), s.tls_key.c_str());
    if (!svr->is_valid())
        throw std::runtime_error("cannot load [console] tls_cert " + s.tls_cert + " / tls_key " +
                                 s.tls_key + " (PEM certificate chain and its private key)");
    return svr;
}

void set_headers(httplib::Server& svr, bool tls) {
    // No inline script or style anywhere: hostile text can only ever be text.
    httplib::Headers hdr{
        {"Content-Security-Policy",
         "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
         "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"},
        {"X-Content-Type-Options", "nosniff"},
        {"X-Frame-Options", "DENY"},
        {"Referrer-Policy", "no-referrer"},
        {"Cache-Control", "no-store"}};
    if (tls) hdr.emplace("Strict-Transport-Security", "max-age=31536000");
    svr.set_default_headers(hdr);
    svr.set_payload_max_length(std::size_t{16} << 20);  // a CSV of ~300k mailboxes
    svr.set_read_timeout(10, 0);
    svr.set_write_timeout(10, 0);
    svr.set_exception_handler(
        [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "unknown error";
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            spdlog::error("{} {}: {}", req.method, req.path, what);
            res.status = 500;
            res.set_content("internal error (see the mx-console log)\n", "text/plain");
        });
}

// Drops root for the configured account (the sockets are bound already).
void become_daemon_account(const config& cfg) {
    if (::geteuid() != 0 || !cfg.user) return;
    auto acct = util::lookup_account(*cfg.user);
    if (!acct)
        throw std::runtime_error("user '" + *cfg.user + "' (config key user) does not exist");
    if (acct->uid == 0) return;
    util::drop_privileges(*acct);
}

}  // namespace

int run(const std::string& config_path) {
    auto cfg = load_config(resolve_config_path(config_path));
    setup_logging(cfg, "mx-console");
    auto settings = read_settings(cfg);
    bool tls = !settings.tls_cert.empty();

    util::signal_pipe sigs({SIGTERM, SIGINT});  // before any thread: only the waiter gets them

    auto svr = make_server(settings);
    // Headers and body go out in two writes: without this, Nagle holds a small body until the
    // client's delayed ACK (40 ms) on a keep-alive connection. Set before the bind: httplib
    // applies it to the listening socket.
    svr->set_tcp_nodelay(true);
    if (!svr->bind_to_port(settings.host, settings.port))
        throw std::runtime_error("cannot listen on " + settings.host + ":" +
                                 std::to_string(settings.port) + " ([console] listen)");
    become_daemon_account(cfg);

    console_env env(cfg);
    util::make_dirs(ops::console_dir(cfg), 0700);
    auto history_dir = ops::console_dir(cfg);
    auth a(env.cfg(), tls);
    set_headers(*svr, tls);
    install_assets(*svr);
    a.install(*svr);
    doctor_cache doctor(doctor_command(settings.mxctl, resolve_config_path(config_path).string()),
                        settings.doctor_seconds);
    today_cache today(history_dir);
    log_view logs(settings.postfix_log, settings.log_max_bytes, [&env] {
        auto guard = env.reading();
        return store_connector_map(env);
    });
    install_dashboard(*svr, env, a, history_dir, doctor);
    install_connector_pages(*svr, env, a, today);
    install_mailbox_pages(*svr, env, a);
    install_oauth_pages(*svr, env, a);
    install_log_page(*svr, a, logs);
    install_failed_pages(*svr, env, a);
    install_check_page(*svr, env, a);

    std::mutex mu;
    std::condition_variable cv;
    bool stopping = false;
    std::thread sampler([&] {
        std::unique_lock lock(mu);
        do {
            try {
                if (auto* shm = env.shm()) sample_all(history_dir, *shm, settings.history_points);
            } catch (const std::exception& e) {
                spdlog::warn("history: {}", e.what());
            }
        } while (!cv.wait_for(lock, std::chrono::seconds(settings.sample_seconds),
                              [&] { return stopping; }));
    });
    std::thread waiter([&svr, &sigs] {
        sigs.start();  // this thread alone takes SIGTERM/SIGINT
        while (sigs.wait(std::chrono::milliseconds(-1)) == 0) {
        }
        svr->stop();
    });

    std::string url =
        std::string(tls ? "https" : "http") + "://" +
        (settings.host.find(':') != std::string::npos ? "[" + settings.host + "]" : settings.host) +
        ":" + std::to_string(settings.port) + "/";
    spdlog::info("mx-console listening on {}", url);
    bool ok = svr->listen_after_bind();
    util::signal_pipe::post(SIGTERM);  // wakes the waiter when listening ended on its own
    waiter.join();
    {
        std::lock_guard lock(mu);
        stopping = true;
    }
    cv.notify_all();
    sampler.join();
    spdlog::info("mx-console stopped");
    return ok ? 0 : 1;
}

}  // namespace mx::console
