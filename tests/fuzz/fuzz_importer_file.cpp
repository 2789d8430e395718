// fuzz_importer_file: the importer's per-file path, not just the parser — the input becomes a
// drop file in a private connector (real store, real journal, real Maildir targets) and one
// engine::run_batch() handles it: claim, parse (forked worker), journal keys from the file
// name / Message-ID / queue id / recipients, mailbox resolution and target choice, delivery or
// ImportFailed with a bounce, final journal records.
//
// Input: the first line (up to '\n', at most 255 bytes; '/' and NUL become '_', a leading '.'
// gets a '_' before it) is the drop file's name, the rest is the file. Seeds in
// corpus/importer_file/: long Message-IDs, queue ids and names, odd and repeated envelope
// headers, many recipients, temporary targets.
//
// Invariants (a violation aborts): no exception leaves run_batch(); nothing stays in new/;
// every file left in .work/ has a retry record in the journal (never a silent loop); no journal
// key exceeds LMDB's 511 bytes; every ImportFailed message has its reason file.
//
// Built with -DMX_FUZZ=ON (clang, libFuzzer). Without it the same source becomes
// replay_importer_file, which ctest runs over the corpus in the normal test suite.
#include <sys/resource.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "global/config.hpp"
#include "global/journal.hpp"
#include "global/store.hpp"
#include "importer.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define MX_FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MX_FUZZ_ASAN 1
#endif
#endif

namespace fs = std::filesystem;
using namespace mx::importer;

namespace {

[[noreturn]] void violated(const std::string& what) {
    std::fprintf(stderr, "fuzz_importer_file: invariant violated: %s\n", what.c_str());
    std::abort();
}

struct world {
    fs::path root;
    mx::config cfg;
    std::optional<mx::store> st;
    std::optional<journal> jr;
    std::unique_ptr<engine> eng;
    folder fold;
    std::size_t runs = 0;

    world() {
        // MX_FUZZ_LOG=1 keeps the importer's log (to understand a finding).
        if (!std::getenv("MX_FUZZ_LOG")) spdlog::set_level(spdlog::level::off);
        root = fs::temp_directory_path() / ("mx-fuzz-importer-" + std::to_string(::getpid()));
        fs::remove_all(root);
        fs::create_directories(root / "drop" / "new");
        std::string toml = "state_dir = \"" + (root / "state").string() + "\"\nrun_dir = \"" +
                           (root / "run").string() + "\"\nmail_root = \"" +
                           (root / "mail").string() +
                           "\"\nhostname = \"fuzz.host\"\n[importer]\neml_settle_seconds = 0\n"
                           "retry_base_seconds = 3600\nparse_timeout_seconds = 5\n";
        cfg = mx::parse_config(toml, root / "mx.toml");
        st = mx::store::open(cfg.store_dir(), false);
        st->write([&](mx::store_tx& tx) {
            mx::connector c;
            c.name = "demo";
            c.drop_folder = (root / "drop").string();
            c.domains = {"example.test", "catchall.test"};
            c.max_message_size = 64 * 1024;  // small: "too-large" is reachable
            tx.add_connector(c);
            auto add = [&](const char* a, const std::string& target) {
                mx::mailbox m;
                m.address = a;
                m.connector = "demo";
                m.target = target;
                tx.add_mailbox(m);
            };
            add("info@example.test", "");
            add("sales@example.test", "");
            add("@catchall.test", "");
            // a target that cannot work: temporary failures, retry records
            add("temp@example.test", "maildir:/proc/mx-fuzz-no-such-place/temp");
        });
        jr = journal::open(cfg.journal_dir(), false);
        auto s = settings::from(cfg);
        s.worker.exec_path.clear();  // fork mode: no second binary needed
        s.parse_workers = 1;
#ifdef MX_FUZZ_ASAN
        // AddressSanitizer's shadow memory makes any RLIMIT_AS fail the worker's first mmap:
        // every file would be "unparseable" and the journal-key paths never reached.
        s.worker.memory_limit = RLIM_INFINITY;
#endif
        eng = std::make_unique<engine>(cfg, s, *jr, nullptr);
        fold = folder::from(*st->read().find_connector("demo"));
    }
    ~world() {
        eng.reset();
        std::error_code ec;
        fs::remove_all(root, ec);
    }

    void check_and_clean() {
        std::error_code ec;
        for (fs::directory_iterator it(fold.new_dir(), ec), end; !ec && it != end; it.increment(ec))
            if (it->path().filename().string()[0] != '.')
                violated("left in new/: " + it->path().string());
        auto work = fold.work_dir("fuzz.host");
        {
            auto t = jr->read();
            for (fs::directory_iterator it(work, ec), end; !ec && it != end; it.increment(ec)) {
                if (it->path().filename().string()[0] == '.') continue;
                if (!jr->retry(t, it->path().string()))
                    violated("in .work/ without a retry record: " + it->path().string());
            }
            for (const auto* d : {&jr->deliveries_dbi(), &jr->files_dbi()}) {
                auto c = mx::lmdb::cursor::open(t, *d);
                std::string_view k, v;
                for (bool ok = c.first(k, v); ok; ok = c.next(k, v))
                    if (k.size() > 511) violated("journal key over 511 bytes");
            }
        }
        for (fs::directory_iterator it(fold.failed_dir(), ec), end; !ec && it != end;
             it.increment(ec)) {
            auto n = it->path().string();
            if (it->is_regular_file() && n.size() > 5 && n.substr(n.size() - 5) != ".json" &&
                !fs::exists(n + ".json"))
                violated("ImportFailed message without reason file: " + n);
        }
        // Clean up so every input starts alike (the journal keeps its records: duplicates
        // are a path worth exercising too, pruned now and then).
        jr->write([&](mx::lmdb::txn& t) {
            for (fs::directory_iterator it(work, ec), end; !ec && it != end; it.increment(ec))
                jr->del_retry(t, it->path().string());
        });
        for (const auto& d : {work, fold.failed_dir(), root / "mail", root / "state" / "bounces"})
            fs::remove_all(d, ec);
        if (++runs % 500 == 0) jr->prune(INT64_MAX);
    }
};

std::string file_name(std::string_view line) {
    std::string n(line.substr(0, 255));
    for (char& c : n)
        if (c == '/' || c == '\0') c = '_';
    if (n.empty() || n == "." || n == "..") n = "m";
    if (n[0] == '.') n = "_" + n.substr(0, 254);
    return n;
}

// One installation for the whole run (set up once, cleaned after every input).
world& the_world() {
    static world w;
    return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    world& w = the_world();
    std::string_view in(reinterpret_cast<const char*>(data), size);
    auto nl = in.find('\n');
    std::string name =
        file_name(nl == std::string_view::npos ? std::string_view{} : in.substr(0, nl));
    std::string_view body = nl == std::string_view::npos ? in : in.substr(nl + 1);
    {
        std::ofstream out(w.fold.new_dir() / name, std::ios::binary);
        out.write(body.data(), static_cast<std::streamsize>(body.size()));
    }
    try {
        w.eng->run_batch(w.fold, &*w.st);
    } catch (const std::exception& e) {
        violated(std::string("exception from run_batch: ") + e.what());
    }
    w.check_and_clean();
    return 0;
}

#ifdef MX_FUZZ_REPLAY_MAIN
// Replays every file of the given folders (the corpus) once, as libFuzzer would.
int main(int argc, char** argv) {
    std::size_t n = 0;
    for (int i = 1; i < argc; ++i)
        for (const auto& e : fs::directory_iterator(argv[i])) {
            if (!e.is_regular_file()) continue;
            std::ifstream f(e.path(), std::ios::binary);
            std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
            LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
            ++n;
        }
    std::printf("replayed %zu input(s)\n", n);
    // The per-file path really ran: the seed with a 600-character Message-ID is in the index.
    auto& w = the_world();
    auto t = w.jr->read();
    if (w.jr->lookup(t, journal::by::message_id, "<" + std::string(600, 'x') + "@remote.test>")
            .empty()) {
        std::printf("the long Message-ID of corpus/importer_file/long_message_id is not indexed\n");
        return 1;
    }
    return n > 0 ? 0 : 1;
}
#endif
