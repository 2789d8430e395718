// mx-json-dump (test-only): prints the JSON document the webhook target builds for each file
// given on the command line, one line per file: {"file": PATH, "json": {...}} or
// {"file": PATH, "error": "..."}. The differential fidelity harness (compare.py) reads it.
//
// Promises: the same code path as a format=json webhook delivery (message_to_json), with no
// attachment content inlined; a file the builder rejects yields an "error" line, never a crash
// of the whole run (each file is converted in-process but exceptions are caught per file).
#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "message_json.hpp"
#include "target_http.hpp"

int main(int argc, char** argv) {
    int rc = 0;
    for (int i = 1; i < argc; ++i) {
        nlohmann::json line{{"file", argv[i]}};
        std::ifstream in(argv[i], std::ios::binary);
        if (!in) {
            line["error"] = "cannot open";
            rc = 1;
        } else {
            std::string data{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
            try {
                line["json"] = mx::importer::message_to_json(data, UINT64_MAX);
            } catch (const std::exception& e) {
                line["error"] = e.what();
            }
        }
        std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
    return rc;
}
