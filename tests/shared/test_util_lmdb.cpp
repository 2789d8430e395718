// util::lmdb: env::reader_check clears the reader slot of a process killed while it held a read
// transaction (a real child process, SIGKILL), and reports its errors typed; read_txn_pool
// renews kept read transactions (newest snapshot, same slot), also from many threads at once.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "lib/test_support.hpp"
#include "util/lmdb.hpp"

namespace {

// mdb_reader_list's text: a header line and one line per slot in use ("pid thread txnid").
std::string reader_list(mx::lmdb::env& e) {
    std::string out;
    mdb_reader_list(
        e.handle(),
        [](const char* msg, void* ctx) {
            static_cast<std::string*>(ctx)->append(msg);
            return 0;
        },
        &out);
    return out;
}

bool lists_pid(mx::lmdb::env& e, pid_t pid) {
    const std::string list = reader_list(e), needle = " " + std::to_string(pid) + " ";
    return list.find(needle) != std::string::npos;
}

// A child that opens the environment, begins a read transaction (with_txn), says so on the pipe
// and waits to be killed. It never returns into Catch2.
pid_t reader_child(const std::filesystem::path& dir, bool with_txn = true) {
    int p[2];
    REQUIRE(::pipe(p) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(p[0]);
        try {
            mx::lmdb::env::options o;
            o.read_only = true;
            auto e = mx::lmdb::env::open(dir, o);
            std::optional<mx::lmdb::txn> t;
            if (with_txn) t.emplace(mx::lmdb::txn::begin(e, true));
            char c = 'r';
            if (::write(p[1], &c, 1) != 1) ::_exit(2);
            for (;;) ::pause();
        } catch (...) {
            ::_exit(1);
        }
    }
    ::close(p[1]);
    char c = 0;
    const auto n = ::read(p[0], &c, 1);
    ::close(p[0]);
    REQUIRE(n == 1);  // the child holds its read transaction now
    return pid;
}

}  // namespace

TEST_CASE("lmdb reader_check clears the slot of a reader killed with SIGKILL", "[lmdb]") {
    mx::test::temp_dir d("lmdb-readers");
    auto e = mx::lmdb::env::open(d.path, {});
    CHECK(e.reader_check() == 0);

    const pid_t child = reader_child(d.path);
    REQUIRE(lists_pid(e, child));
    CHECK(e.reader_check() == 0);  // alive: its slot stays

    REQUIRE(::kill(child, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFSIGNALED(status));
    // LMDB does not notice by itself while this process keeps the environment open.
    CHECK(lists_pid(e, child));

    CHECK(e.reader_check() == 1);
    CHECK_FALSE(lists_pid(e, child));
    CHECK(e.reader_check() == 0);
}

TEST_CASE("lmdb env::open of a writable env clears dead readers' slots", "[lmdb]") {
    mx::test::temp_dir d("lmdb-readers");
    mx::lmdb::env::open(d.path, {});  // creates the environment
    // Another process keeps the environment open (no transaction), as a running daemon does:
    // nobody opening it after this is "first", so LMDB does not reset the reader table.
    const pid_t holder = reader_child(d.path, false);
    const pid_t child = reader_child(d.path);
    REQUIRE(::kill(child, SIGKILL) == 0);
    REQUIRE(::waitpid(child, nullptr, 0) == child);
    {
        mx::lmdb::env::options ro;
        ro.read_only = true;  // read-only opens leave the table alone
        auto reader = mx::lmdb::env::open(d.path, ro);
        REQUIRE(lists_pid(reader, child));
    }
    auto writer = mx::lmdb::env::open(d.path, {});
    CHECK_FALSE(lists_pid(writer, child));
    ::kill(holder, SIGKILL);
    ::waitpid(holder, nullptr, 0);
}

TEST_CASE("lmdb reader_check errors are typed and name the C function", "[lmdb]") {
    mx::lmdb::env closed;  // no handle: LMDB answers EINVAL
    try {
        closed.reader_check();
        FAIL("reader_check on a closed env did not throw");
    } catch (const mx::lmdb::error& err) {
        CHECK(std::string(err.function()) == "mdb_reader_check");
        CHECK(err.code() == EINVAL);
    }
}

TEST_CASE("lmdb read_txn_pool: renewed transactions see the newest commit, reuse their slot",
          "[lmdb][pool]") {
    mx::test::temp_dir d("lmdb-pool");
    auto e = mx::lmdb::env::open(d.path, {});
    mx::lmdb::dbi db;
    {
        auto t = mx::lmdb::txn::begin(e, false);
        db = mx::lmdb::dbi::open(t, "t", MDB_CREATE);
        db.put(t, "k", "0");
        t.commit();
    }
    auto put = [&](const std::string& v) {
        auto t = mx::lmdb::txn::begin(e, false);
        db.put(t, "k", v);
        t.commit();
    };
    auto slots = [&] {  // reader slots in use by this process (one line each after the header)
        auto list = reader_list(e);
        return std::count(list.begin(), list.end(), '\n') - 1;
    };
    mx::lmdb::read_txn_pool pool(e);
    {
        auto t = pool.take();
        CHECK(db.get(t, "k") == "0");
        pool.give_back(std::move(t));
        CHECK(t.handle() == nullptr);
        pool.give_back(std::move(t));  // empty: ignored
    }
    put("1");
    {
        auto t = pool.take();  // the kept one, renewed: a new snapshot
        CHECK(db.get(t, "k") == "1");
        pool.give_back(std::move(t));
    }
    CHECK(slots() == 1);  // kept, reset: its slot stays taken, with no snapshot
    SECTION("more than the pool keeps: the rest are aborted") {
        std::vector<mx::lmdb::txn> many;
        for (int i = 0; i < 100; ++i) many.push_back(pool.take());
        for (auto& t : many) pool.give_back(std::move(t));
        CHECK(slots() <= static_cast<long>(mx::lmdb::read_txn_pool::capacity));
    }
    SECTION("threads take and give back while a writer commits: always a committed value") {
        std::atomic<bool> stop{false};
        std::atomic<int> errors{0}, reads{0};
        std::vector<std::thread> ts;
        for (int n = 0; n < 8; ++n)
            ts.emplace_back([&] {
                while (!stop.load()) {
                    try {
                        auto t = pool.take();
                        int v = std::stoi(db.get(t, "k").value_or("-1"));
                        if (v < 1 || v > 499) ++errors;
                        ++reads;
                        pool.give_back(std::move(t));
                    } catch (const std::exception&) {
                        ++errors;
                    }
                }
            });
        for (int i = 2; i < 500; ++i) put(std::to_string(i));
        stop = true;
        for (auto& t : ts) t.join();
        CHECK(errors == 0);
        CHECK(reads > 0);
        auto t = pool.take();
        CHECK(db.get(t, "k") == "499");
    }
}
