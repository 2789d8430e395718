// mx-console: the web console of MX Connector (see console.hpp for its parts).
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "console.hpp"

int main(int argc, char** argv) {
    CLI::App app{"mx-console - the web console of MX Connector"};
    std::string config_path;
    app.add_option(
        "--config", config_path,
        "configuration file (default: $MX_CONFIG or /etc/mx-connector/mx-connector.toml)");
    CLI11_PARSE(app, argc, argv);
    try {
        return mx::console::run(config_path);
    } catch (const std::exception& e) {
        std::cerr << "mx-console: " << e.what() << "\n";
        return 1;
    }
}
