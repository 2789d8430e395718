// replay_main: runs a libFuzzer target's LLVMFuzzerTestOneInput over every file of its checked-in
// corpus, without libFuzzer. Linked with a fuzz target's source into fuzz_replay_<name>, so the
// corpora (seeds + what the fuzzers found) are regression tests in every build, compiled by gcc,
// and under ASan/UBSan when MX_SANITIZE=address (docs/testing.md).
// Promises: each file is passed once, as its exact bytes, in sorted order (reproducible); the
// exit status is 0 only when at least one file was replayed and no input crashed (a crash or a
// sanitizer report ends the process, as it would end the fuzzer). The name of the file being
// replayed is printed first, so a crash names its input.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
    std::vector<std::filesystem::path> inputs;
    for (int i = 1; i < argc; ++i) {
        std::filesystem::path p(argv[i]);
        if (std::filesystem::is_directory(p)) {
            for (const auto& e : std::filesystem::directory_iterator(p))
                if (e.is_regular_file()) inputs.push_back(e.path());
        } else {
            inputs.push_back(p);
        }
    }
    std::sort(inputs.begin(), inputs.end());
    if (inputs.empty()) {
        std::fprintf(stderr, "replay: no corpus files given\n");
        return 2;
    }
    for (const auto& p : inputs) {
        std::ifstream f(p, std::ios::binary);
        if (!f) {
            std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
            return 2;
        }
        std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        // A heap block of exactly the input's size, as libFuzzer hands it: a read past the end
        // is caught by ASan (a string's or vector's spare capacity would hide it).
        auto exact = std::make_unique<std::uint8_t[]>(bytes.size());
        std::memcpy(exact.get(), bytes.data(), bytes.size());
        std::fprintf(stderr, "replay: %s\n", p.c_str());
        LLVMFuzzerTestOneInput(exact.get(), bytes.size());
    }
    std::printf("replay: %zu inputs, no crash\n", inputs.size());
    return 0;
}
