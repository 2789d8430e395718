// test_support: what the C++ tests share — a temporary directory removed at the end of the
// test, and reading/writing whole files.
//
// Promises: temp_dir is a fresh private directory (mkdtemp, mode 0700) under $TMPDIR or /tmp,
// removed with its contents by the destructor (errors ignored: a test never fails on cleanup).
#pragma once

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace mx::test {

class temp_dir {
  public:
    explicit temp_dir(const std::string& tag = "test") {
        std::string tmpl = (std::filesystem::temp_directory_path() / ("mx-" + tag + "-XXXXXX"));
        if (!::mkdtemp(tmpl.data()))
            throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
        path = tmpl;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() noexcept {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::filesystem::path path;
};

// The whole file ("" when it cannot be read).
inline std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Writes `data` to p, creating the parent directories.
inline void spit(const std::filesystem::path& p, const std::string& data) {
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary);
    out << data;
}

}  // namespace mx::test
