// shm_segment: a named POSIX shared-memory region of fixed size (Boost.Interprocess).
//
// Promises: the region is created zero-filled when absent, opened when present, and grown to
// `size` if a smaller (older) one exists. It holds only lock-free atomics and plain data laid
// out by the caller, so a process that crashes while attached leaves nothing locked.
// Security: the region is created with `mode` (callers pass 0660 or tighter) and, when
// `owner_uid` is given and we are root, chowned so an unprivileged daemon can write it.
#pragma once

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <sys/types.h>
#include <cstddef>
#include <optional>
#include <string>

namespace mx::util {

class shm_segment {
  public:
    shm_segment() = default;
    static shm_segment open_or_create(const std::string& name, std::size_t size, unsigned mode,
                                      std::optional<uid_t> owner_uid = std::nullopt,
                                      std::optional<gid_t> owner_gid = std::nullopt);
    // Opens an existing region; std::nullopt if it does not exist.
    static std::optional<shm_segment> open_existing(const std::string& name, std::size_t size,
                                                    bool read_only);
    static void remove(const std::string& name) noexcept;

    void* data() const noexcept { return region_.get_address(); }
    std::size_t size() const noexcept { return region_.get_size(); }
    const std::string& name() const noexcept { return name_; }

  private:
    std::string name_;
    boost::interprocess::mapped_region region_;
};

}  // namespace mx::util
