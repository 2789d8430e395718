// fs: durable file operations (the "nothing lost" primitives).
//
// Promises: write_file_durable() leaves either the old file or the complete new one, never a
// torn file: it writes a temporary in the same directory, fsyncs it, renames it into place
// and fsyncs the directory. Errors throw std::system_error naming the path and the call.
// Security: make_dir_for() is the one way root creates a folder for another account: never by
// path after the mkdir (the new folder is opened O_NOFOLLOW and changed through its descriptor),
// and only below a parent no other account can write.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace mx::util {

void fsync_dir(const std::filesystem::path& dir);
void write_file_durable(const std::filesystem::path& path, std::string_view data,
                        unsigned mode = 0640);
std::string read_file(const std::filesystem::path& path);
// rename(2) then fsync of the destination directory (and the source's, when different).
void rename_durable(const std::filesystem::path& from, const std::filesystem::path& to);
// Copies the regular file `from` (opened O_NOFOLLOW) into `tmp` (created 0600, O_NOFOLLOW),
// fsyncs it and renames it to `to`: `to` is the old file or the complete copy, never a torn
// one. Returns 0, or the errno of the call that failed (`tmp` is removed then). The directory
// is not fsynced: callers batch that (sync_set) or do not need it.
int copy_file_synced(const std::filesystem::path& from, const std::filesystem::path& tmp,
                     const std::filesystem::path& to);
// mkdir -p with a mode for newly created components.
void make_dirs(const std::filesystem::path& dir, unsigned mode = 0750);
// Creates the folder `dir` (its parent must exist) with `mode` and hands it to uid:gid
// (-1: keep) through an O_NOFOLLOW|O_DIRECTORY descriptor. Returns false, changing nothing,
// when `dir` already exists. Run as root, throws std::system_error when the parent is not
// root's or is writable by others without the sticky bit (the new name could be swapped
// before it is opened); also when a call fails.
bool make_dir_for(const std::filesystem::path& dir, unsigned mode, uid_t uid, gid_t gid);

}  // namespace mx::util
