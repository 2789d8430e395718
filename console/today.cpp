// console today: each connector's accepted/rejected/imported/failed since local midnight, for
// the connectors list. The shared-memory counters are cumulative since the segment was
// created; the history ring holds them once per interval. Today = the live counters minus the
// ring's last point at or before midnight, summed interval by interval so a counter reset
// (segment re-created) counts from zero — the rule of the history chart.
// Reading a ring (645 KB) is cached for a few seconds per connector: the list stays cheap.
#include <cstring>
#include <ctime>

#include "console.hpp"

namespace mx::console {
namespace {

constexpr std::int64_t ring_cache_seconds = 10;

std::uint64_t delta(std::uint64_t before, std::uint64_t now) {
    return now >= before ? now - before : now;  // a reset counts from zero
}

void add_delta(sample& sum, const sample& a, const sample& b) {
    sum.accepted += delta(a.accepted, b.accepted);
    sum.rejected += delta(a.rejected, b.rejected);
    sum.tempfailed += delta(a.tempfailed, b.tempfailed);
    sum.imported += delta(a.imported, b.imported);
    sum.failed += delta(a.failed, b.failed);
}

}  // namespace

std::int64_t local_midnight(std::int64_t now) {
    std::time_t t = static_cast<std::time_t>(now);
    std::tm tm{};
    ::localtime_r(&t, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    return static_cast<std::int64_t>(std::mktime(&tm));
}

today_counts counts_since(const std::vector<sample>& ring, const sample& live, std::int64_t since,
                          std::int64_t segment_created) {
    today_counts out;
    if (segment_created >= since) {
        // Everything the segment counted happened today.
        out.counts = live;
        out.counts.time = 0;
        out.from = since;
        return out;
    }
    // The last point at or before `since`; without one, the first point (the ring is younger).
    std::size_t start = 0;
    bool found = false;
    for (std::size_t i = 0; i < ring.size(); ++i)
        if (ring[i].time <= since) {
            start = i;
            found = true;
        }
    if (ring.empty()) {
        out.from = live.time;  // nothing known before now
        return out;
    }
    out.from = found ? since : ring[start].time;
    for (std::size_t i = start + 1; i < ring.size(); ++i)
        add_delta(out.counts, ring[i - 1], ring[i]);
    add_delta(out.counts, ring.back(), live);
    return out;
}

today_counts today_cache::of(const connector_counters& live, std::int64_t segment_created) {
    std::string name(live.name, ::strnlen(live.name, sizeof live.name));
    auto now = take_sample(live);
    auto midnight = local_midnight(now.time);
    if (segment_created >= midnight || !valid_connector_name(name))
        return counts_since({}, now, midnight, segment_created);
    std::lock_guard lock(mu_);
    auto& e = rings_[name];
    if (now.time - e.read_at >= ring_cache_seconds || now.time < e.read_at ||
        e.midnight != midnight) {
        auto ring = history(history_path(dir_, name), console_settings{}.history_points).read();
        e.read_at = now.time;
        e.midnight = midnight;
        e.empty = ring.empty();
        if (!e.empty) {
            e.last = ring.back();
            e.upto_last = counts_since(ring, e.last, midnight, segment_created);
        }
    }
    if (e.empty) return counts_since({}, now, midnight, segment_created);
    auto out = e.upto_last;
    add_delta(out.counts, e.last, now);
    return out;
}

}  // namespace mx::console
