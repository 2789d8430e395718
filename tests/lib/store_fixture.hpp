// store_fixture: a fresh connector store in a temporary directory for the C++ tests, and the
// connector/mailbox records they fill it with.
//
// Promises: the store lives in <temp dir>/store and is closed before the directory is removed.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "global/model.hpp"
#include "global/store.hpp"
#include "lib/test_support.hpp"

namespace mx::test {

inline connector make_connector(std::string name, std::vector<std::string> domains,
                                bool active = true) {
    connector c;
    c.name = std::move(name);
    c.drop_folder = "/srv/drop/" + c.name;
    c.domains = std::move(domains);
    c.active = active;
    return c;
}

inline mailbox make_mailbox(std::string address, std::string conn) {
    mailbox m;
    m.address = std::move(address);
    m.connector = std::move(conn);
    return m;
}

struct store_fixture {
    temp_dir dir{"store"};
    std::optional<store> s{store::open(dir.path / "store", false)};
    store_fixture() = default;
    store_fixture(const store_fixture&) = delete;
    store_fixture& operator=(const store_fixture&) = delete;
    ~store_fixture() noexcept { s.reset(); }  // closed before temp_dir removes the files
};

}  // namespace mx::test
