// importer_fixture: a private installation in a temporary folder for in-process engine tests:
// config, store with connector "demo" (example.test) and mailboxes info@/sales@, journal,
// engine with a forked parse worker. Everything is removed when the fixture ends.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>

#include "global/config.hpp"
#include "global/journal.hpp"
#include "global/store.hpp"
#include "importer.hpp"
#include "lib/test_support.hpp"

namespace mx::importer::testing {

using mx::test::slurp;
using mx::test::spit;

struct fixture {
    std::filesystem::path root;
    config cfg;
    std::optional<store> st;
    std::optional<journal> jr;
    std::unique_ptr<engine> eng;
    folder fold;

    // `hostname` names the work folder (.work/<hostname>); `drop_sub` is the drop folder
    // below the root (deep paths make long work paths).
    explicit fixture(const std::string& extra_toml = "", const std::string& hostname = "test.host",
                     const std::string& drop_sub = "drop") {
        std::random_device rd;
        root = std::filesystem::temp_directory_path() /
               ("mx-importer-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
        std::filesystem::create_directories(root);
        std::string toml = "state_dir = \"" + (root / "state").string() + "\"\n" + "run_dir = \"" +
                           (root / "run").string() + "\"\n" + "mail_root = \"" +
                           (root / "mail").string() + "\"\n" + "hostname = \"" + hostname +
                           "\"\n[importer]\neml_settle_seconds = 0\ndelivery_grace_ms = 0\n" + extra_toml;
        cfg = parse_config(toml, root / "mx.toml");
        st = store::open(cfg.store_dir(), false);
        st->write([&](store_tx& tx) {
            connector c;
            c.name = "demo";
            c.drop_folder = (root / drop_sub).string();
            c.domains = {"example.test"};
            tx.add_connector(c);
            for (const char* a : {"info@example.test", "sales@example.test"}) {
                mailbox m;
                m.address = a;
                m.connector = "demo";
                tx.add_mailbox(m);
            }
        });
        std::filesystem::create_directories(root / drop_sub / "new");
        jr = journal::open(cfg.journal_dir(), false);
        auto s = settings::from(cfg);
        s.worker.exec_path.clear();  // fork mode
        eng = std::make_unique<engine>(cfg, s, *jr, nullptr);
        fold = folder::from(*st->read().find_connector("demo"));
    }
    ~fixture() {
        eng.reset();
        std::error_code ec;
        std::filesystem::remove_all(root, ec);
    }
    // Runs batches until nothing is left to do; returns the summed stats.
    batch_stats drain() {
        batch_stats sum;
        for (int i = 0; i < 1000; ++i) {
            auto b = eng->run_batch(fold, &*st);
            sum.files += b.files;
            sum.imported += b.imported;
            sum.failed += b.failed;
            sum.deferred += b.deferred;
            sum.duplicates += b.duplicates;
            if (b.files == 0) break;
        }
        return sum;
    }
    std::filesystem::path maildir_new(const std::string& mailbox) const {
        auto at = mailbox.find('@');
        return root / "mail" / mailbox.substr(at + 1) / mailbox.substr(0, at) / "new";
    }
    std::size_t count(const std::filesystem::path& dir) const {
        std::size_t n = 0;
        std::error_code ec;
        for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end;
             it.increment(ec))
            if (it->is_regular_file()) ++n;
        return n;
    }
};

}  // namespace mx::importer::testing
