// domain_table: the connector domains as a Postfix-native `lmdb:` table, written by mx-milter
// from the store, so that trivial-rewrite(8) answers "is this one of our domains" in-process for
// every recipient it resolves instead of asking the socketmap over a socket each time.
//
// Format (what postmap(1) writes for lmdb:, read by Postfix's dict_lmdb): one LMDB data file
// "<table>.lmdb" (MDB_NOSUBDIR, no lock file), unnamed database, keys and values with a trailing
// NUL. Keys are the store's domain patterns as Postfix looks them up in a domain list:
//   example.com    -> exact domain
//   .example.com   -> every subdomain (Postfix asks ".parent" keys of table-based domain lists)
// The "." pattern (every domain) has no key: the socketmap listed after this table answers it,
// and it answers domains added since the file was last read as well.
//
// Freshness: the file is replaced by rename whenever its content changes (never for mailbox-
// only changes). trivial-rewrite notices a replaced table within 10 seconds and restarts
// itself; smtpd before its next connection. Until then the socketmap still answers new domains.
// Security: keys are validated domain patterns (lower-case letters, digits, '-', '.', '_');
// anything else is left to the socketmap and logged by the caller.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "milter.hpp"
#include "util/lmdb.hpp"

namespace mx::milter {

bool plain_domain(std::string_view domain) {
    if (domain.empty() || domain.size() > 253) return false;
    for (char c : domain) {
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
        if (!ok) return false;
    }
    return true;
}

domain_entries render_domain_table(store_view& v) {
    domain_entries out;
    for (const auto& [pattern, owner] : v.domains()) {
        if (pattern == ".") continue;
        std::string_view name = pattern.front() == '.' ? std::string_view(pattern).substr(1)
                                                       : std::string_view(pattern);
        if (!plain_domain(name)) continue;
        out.emplace(pattern, owner);
    }
    return out;
}

void write_domain_table(const std::string& table, const domain_entries& entries) {
    const std::string file = table + ".lmdb";
    const std::string tmp = file + ".tmp";
    ::unlink(tmp.c_str());  // a leftover of an interrupted write
    {
        lmdb::env::options o;
        o.max_dbs = 0;
        o.single_file = true;
        o.mode = 0644;  // Postfix reads it as user postfix
        std::size_t bytes = 0;
        for (const auto& [k, val] : entries) bytes += k.size() + val.size() + 64;
        o.initial_map_size = (std::size_t{1} << 20) + bytes * 4;
        auto env = lmdb::env::open(tmp, o);
        auto t = lmdb::txn::begin(env, false);
        auto db = lmdb::dbi::open(t, nullptr);
        for (const auto& [k, val] : entries)
            db.put(t, std::string_view(k.c_str(), k.size() + 1),
                   std::string_view(val.c_str(), val.size() + 1));
        t.commit();
        env.sync(true);
    }
    ::chmod(tmp.c_str(), 0644);
    if (::rename(tmp.c_str(), file.c_str()) != 0)
        throw std::system_error(errno, std::generic_category(), "rename " + tmp);
}

}  // namespace mx::milter
