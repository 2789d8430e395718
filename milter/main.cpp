// mx-milter: RCPT TO decisions for Postfix/Sendmail over the milter protocol, plus the Postfix
// socketmap service for connector domains. Everything lives in mx_milter_core (milter.hpp).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "milter.hpp"

// libmilter's smfi_main() starts a thread that sigwait()s for SIGHUP, SIGTERM and SIGINT and
// then stops the milter on its own. mx-milter's main thread handles those signals itself
// (daemon.cpp: SIGHUP reloads, SIGTERM stops cleanly with exit 0); with both waiting, the
// kernel gives a signal to either, and when libmilter's thread took it a SIGTERM ended with
// "milter loop ended unexpectedly" and exit 1, a SIGHUP stopped the milter instead of reloading
// it. This definition, in the executable, takes the place of libc's for libmilter (a shared
// library resolves sigwait here first): its thread waits forever, with the signals blocked,
// so only the main thread ever receives them.
extern "C" int sigwait(const sigset_t*, int*) {
    for (;;) ::pause();
}

int main(int argc, char** argv) {
    CLI::App app{"mx-milter: rejects unknown recipients at SMTP time (see docs/milter.md)"};
    mx::milter::options opts;
    app.add_option("--config", opts.config_path,
                   "configuration file (default $MX_CONFIG, /etc/mx-connector/mx-connector.toml)");
    app.add_flag("--check-config", opts.check_config, "validate the configuration and exit");
    CLI11_PARSE(app, argc, argv);
    return mx::milter::run(opts);
}
