/* loopback_bind.so: a bind() that turns "every interface" into "loopback only".
 *
 * Beam's Java job server binds its job and artifact services, and the Flink runner binds
 * the Fn API servers it opens inside the TaskManager for each job (control, data, state,
 * logging, provisioning, artifacts), with grpc-netty's NettyServerBuilder.forPort(port):
 * the wildcard address, every interface, whatever --job-host says. Beam has no option to
 * change it. deploy/flink/local-cluster.sh preloads this library into the JVMs it starts
 * (LD_PRELOAD), so that a bind to 0.0.0.0 becomes 127.0.0.1 and a bind to :: becomes
 * ::ffff:127.0.0.1 (IPv4 loopback through a dual-stack socket; the JVMs run with
 * -Djava.net.preferIPv4Stack=true, so that case is a fallback). Binds to any other
 * address, and every other call, are untouched.
 *
 * Build: cc -shared -fPIC -O2 -o loopback_bind.so loopback_bind.c -ldl
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind;
    if (!real_bind) {
        real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
        if (!real_bind) {
            errno = ENOSYS;
            return -1;
        }
    }
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY)) {
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
        }
    } else if (addr && addr->sa_family == AF_INET6 &&
               len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr)) {
            static const unsigned char mapped_loopback[16] = {
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
            memcpy(&a.sin6_addr, mapped_loopback, sizeof mapped_loopback);
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
        }
    }
    return real_bind(fd, addr, len);
}
