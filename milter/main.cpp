// mx-milter: RCPT TO decisions for Postfix/Sendmail over the milter protocol, plus the Postfix
// socketmap service for connector domains. Everything lives in mx_milter_core (milter.hpp).
#include <CLI/CLI.hpp>

#include "milter.hpp"

int main(int argc, char** argv) {
    CLI::App app{"mx-milter: rejects unknown recipients at SMTP time (see docs/milter.md)"};
    mx::milter::options opts;
    app.add_option("--config", opts.config_path,
                   "configuration file (default $MX_CONFIG, /etc/mx-connector/mx-connector.toml)");
    app.add_flag("--check-config", opts.check_config, "validate the configuration and exit");
    CLI11_PARSE(app, argc, argv);
    return mx::milter::run(opts);
}
