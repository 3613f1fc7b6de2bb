// Writing a file so that a crash or an error never leaves a torn one: the bytes go to a
// temporary file beside the target, are flushed to disk, and only then renamed over the
// target; the directory is flushed after. Any failure removes the temporary file and
// leaves an existing target as it was. Errors are std::runtime_error "PATH: problem".
// POSIX only. Used by the safetensors writer (checkpoints), the npy writer and the token
// cache.
//
// A writer killed mid-write leaves its temporary file (TARGET.tmpNNN, TARGET cut to fit a
// file name's 255 bytes). Each writer holds
// an flock on its own while it writes, and the next write to the same target removes the
// ones nobody holds that are older than ten minutes: a crashed save's file goes, a live
// writer's stays (the age also covers the instant between a writer's open and its lock,
// and file systems where flock is only advisory between processes).
#ifndef XOPTIM_IO_ATOMIC_FILE_HPP
#define XOPTIM_IO_ATOMIC_FILE_HPP

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace xoptim::io
{
    // Owns a temporary file beside the target until it is renamed over it; removes it on
    // any failure, so a failed write leaves the directory as it was.
    class atomic_file
    {
    public:

        // Where flushing the directory after the rename fails, the new file is in place
        // and complete: `strict` reports it as an error, otherwise it is let go.
        explicit atomic_file(const std::string& path, bool strict_directory_sync = true)
            : m_path(path), m_strict(strict_directory_sync)
        {
            struct stat st;
            if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
            {
                fail("cannot write: is a directory");
            }
            std::random_device random;
            int error = 0;
            const std::filesystem::path target(path);
            const std::string stem = (target.parent_path() / temporary_base(target.filename().string())).string();
            for (int attempt = 0; attempt < 100; ++attempt)
            {
                m_temp = stem + ".tmp" + std::to_string(random());
                // O_EXCL: never reuse a file some other writer just created.
                m_fd = ::open(m_temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
                if (m_fd >= 0)
                {
                    ::flock(m_fd, LOCK_EX | LOCK_NB);  // ours alone: cannot be held elsewhere
                    remove_stale_temporaries();
                    return;
                }
                error = errno;
                if (error != EEXIST)
                {
                    break;
                }
            }
            fail("cannot create temporary file '" + m_temp + "': " + std::strerror(error));
        }

        atomic_file(const atomic_file&) = delete;
        atomic_file& operator=(const atomic_file&) = delete;

        ~atomic_file()
        {
            if (m_fd >= 0)
            {
                ::close(m_fd);
            }
            if (!m_committed)
            {
                ::unlink(m_temp.c_str());
            }
        }

        void write(const void* data, std::size_t n)
        {
            const char* p = static_cast<const char*>(data);
            while (n > 0)
            {
                const std::size_t chunk = std::min<std::size_t>(n, std::size_t(1) << 30);
                const ssize_t written = ::write(m_fd, p, chunk);
                if (written < 0 && errno == EINTR)
                {
                    continue;
                }
                if (written <= 0)
                {
                    failed("cannot write temporary file", written == 0 ? ENOSPC : errno);
                }
                p += written;
                n -= static_cast<std::size_t>(written);
            }
        }

        void commit()
        {
            // The data must be on disk before the rename makes it the target, or a crash
            // could leave a complete-looking file of zeros.
            if (::fsync(m_fd) != 0)
            {
                failed("cannot flush temporary file to disk", errno);
            }
            const int closed = ::close(m_fd);
            m_fd = -1;
            if (closed != 0)
            {
                failed("cannot close temporary file", errno);
            }
            if (::rename(m_temp.c_str(), m_path.c_str()) != 0)
            {
                failed("cannot rename temporary file into place", errno);
            }
            m_committed = true;
            sync_directory();
        }

        // A temporary file is left alone while it is this young, locked or not.
        static constexpr std::time_t stale_after_seconds = 600;

    private:

        // The start of a temporary file's name for a target named `base`: base itself,
        // cut where base.tmpNNN would be longer than a file name may be (255 bytes).
        static std::string temporary_base(const std::string& base)
        {
            constexpr std::size_t name_max = 255;
            constexpr std::size_t suffix = 4 + 10;  // ".tmp" and random()'s 10 digits at most
            return base.substr(0, name_max - suffix);
        }

        // Whether `name` is a temporary file's name for a target named `base`: base.tmpNNN.
        static bool temporary_of(const std::string& name, const std::string& base)
        {
            const std::string prefix = temporary_base(base) + ".tmp";
            if (name.size() <= prefix.size() || name.size() > prefix.size() + 20
                || name.compare(0, prefix.size(), prefix) != 0)
            {
                return false;
            }
            return std::all_of(name.begin() + std::ptrdiff_t(prefix.size()), name.end(),
                               [](char c) { return c >= '0' && c <= '9'; });
        }

        // Removes the temporary files of earlier writes to this target that crashed:
        // regular files of ours, older than stale_after_seconds, that no writer holds.
        // Best effort: whatever cannot be looked at is left.
        void remove_stale_temporaries() const noexcept
        {
            const std::filesystem::path target(m_path);
            const std::string base = target.filename().string();
            const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
            std::error_code ec;
            std::filesystem::directory_iterator it(dir, ec), end;
            const std::time_t now = std::time(nullptr);
            for (; !ec && it != end; it.increment(ec))
            {
                const std::string name = it->path().filename().string();
                const std::string path = it->path().string();
                if (!temporary_of(name, base) || path == m_temp)
                {
                    continue;
                }
                // O_NOFOLLOW: a link is not ours to follow; O_NONBLOCK: a FIFO does not hang us.
                const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
                if (fd < 0)
                {
                    continue;
                }
                struct stat held, named;
                if (::fstat(fd, &held) == 0 && S_ISREG(held.st_mode) && held.st_uid == ::geteuid()
                    && now - held.st_mtime >= stale_after_seconds && ::flock(fd, LOCK_EX | LOCK_NB) == 0
                    && ::lstat(path.c_str(), &named) == 0 && named.st_dev == held.st_dev
                    && named.st_ino == held.st_ino)
                {
                    ::unlink(path.c_str());
                }
                ::close(fd);
            }
        }

        [[noreturn]] void fail(const std::string& problem) const
        {
            throw std::runtime_error(m_path + ": " + problem);
        }

        [[noreturn]] void failed(const char* what, int error) const
        {
            fail(std::string(what) + " '" + m_temp + "': " + std::strerror(error));
        }

        // Makes the rename itself durable. The new file is in place by now, so the
        // message says so rather than suggesting the old one survived.
        void sync_directory() const
        {
            std::string dir = std::filesystem::path(m_path).parent_path().string();
            if (dir.empty())
            {
                dir = ".";
            }
            const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            int error = fd < 0 ? errno : 0;
            if (fd >= 0)
            {
                if (::fsync(fd) != 0)
                {
                    error = errno;
                }
                ::close(fd);
            }
            // EINVAL: the file system cannot sync directories; there is nothing more to do.
            if (m_strict && error != 0 && error != EINVAL)
            {
                fail("file written, but cannot flush directory '" + dir + "' to disk: "
                                 + std::strerror(error));
            }
        }

        std::string m_path;
        bool m_strict;
        std::string m_temp;
        int m_fd = -1;
        bool m_committed = false;
    };
}

#endif
