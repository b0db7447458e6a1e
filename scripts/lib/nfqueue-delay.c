/*
 * nfqueue-delay: holds every packet of one netfilter queue for a fixed time, then accepts it.
 *
 * The benchmarks' kernel delay where the kernel has no netem qdisc (this project's VMs run a
 * kernel without CONFIG_NET_SCH_NETEM). In a private network namespace, the rule
 *   iptables-legacy -A OUTPUT -o lo -j NFQUEUE --queue-num Q
 * hands every loopback packet (data, ACKs, handshakes) to the kernel queue Q once; this process
 * tells the kernel to let each one go DELAY_MS after it was queued. Like netem on lo, that is
 * one-way latency on every link, applied to real TCP segments.
 *
 * One queue and one constant delay keep packets in arrival order, so a single batch verdict
 * ("accept every packet up to id N") releases all that are due. A lost notification
 * (ENOBUFS) therefore delays nothing for long: the next batch verdict covers it.
 *
 * Usage: nfqueue-delay QUEUE DELAY_MS
 * Prints "ready" on stdout once bound; on SIGTERM/SIGINT accepts what it holds and exits 0.
 * No libraries: raw nfnetlink (linux/netfilter/nfnetlink_queue.h) over a netlink socket.
 */
#define _GNU_SOURCE /* ppoll */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HELD (1 << 16)           /* packets held at once; the kernel queue gets the same limit */
#define RECV_BUFFER (1 << 16)

struct held_packet { uint32_t id; int64_t due_ns; };
static struct held_packet held[MAX_HELD]; /* ring buffer, oldest at held[first] */
static size_t first, count;
static volatile sig_atomic_t stopping;

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "nfqueue-delay: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* Starts an nfnetlink-queue message of `type` for `queue` in buf (at least 256 bytes). */
static struct nlmsghdr *start_message(char *buf, uint16_t type, uint16_t queue, uint16_t flags) {
  memset(buf, 0, 256);
  struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
  nlh->nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg));
  nlh->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | type;
  nlh->nlmsg_flags = NLM_F_REQUEST | flags;
  struct nfgenmsg *g = NLMSG_DATA(nlh);
  g->nfgen_family = AF_UNSPEC;
  g->version = NFNETLINK_V0;
  g->res_id = htons(queue);
  return nlh;
}

static void put_attribute(struct nlmsghdr *nlh, uint16_t type, const void *data, uint16_t len) {
  struct nlattr *a = (struct nlattr *)((char *)nlh + NLMSG_ALIGN(nlh->nlmsg_len));
  a->nla_type = type;
  a->nla_len = NLA_HDRLEN + len;
  memcpy((char *)a + NLA_HDRLEN, data, len);
  nlh->nlmsg_len = NLMSG_ALIGN(nlh->nlmsg_len) + NLA_ALIGN(a->nla_len);
}

static void send_message(int fd, const struct nlmsghdr *nlh) {
  struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
  if (sendto(fd, nlh, nlh->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) die("sendto");
}

/* Sends a configuration message with NLM_F_ACK and fails loudly if the kernel refuses it. */
static void configure(int fd, const struct nlmsghdr *nlh, const char *what) {
  send_message(fd, nlh);
  char reply[1024];
  ssize_t n = recv(fd, reply, sizeof reply, 0);
  if (n < 0) die(what);
  const struct nlmsghdr *r = (const struct nlmsghdr *)reply;
  if (r->nlmsg_type == NLMSG_ERROR) {
    const struct nlmsgerr *e = NLMSG_DATA(r);
    if (e->error != 0) {
      errno = -e->error;
      die(what);
    }
  }
}

/* Accepts every queued packet with an id up to and including `id`. */
static void accept_up_to(int fd, uint16_t queue, uint32_t id) {
  char buf[256];
  struct nlmsghdr *nlh = start_message(buf, NFQNL_MSG_VERDICT_BATCH, queue, 0);
  struct nfqnl_msg_verdict_hdr verdict = { .verdict = htonl(NF_ACCEPT), .id = htonl(id) };
  put_attribute(nlh, NFQA_VERDICT_HDR, &verdict, sizeof verdict);
  send_message(fd, nlh);
}

/* Releases the packets whose time has come (all of them when `all`). */
static void release_due(int fd, uint16_t queue, int all) {
  int64_t now = now_ns();
  size_t n = 0;
  while (n < count && (all || held[(first + n) % MAX_HELD].due_ns <= now)) n++;
  if (n == 0) return;
  accept_up_to(fd, queue, held[(first + n - 1) % MAX_HELD].id);
  first = (first + n) % MAX_HELD;
  count -= n;
}

/* Reads the packet notifications waiting on the socket and holds each one. */
static void take_packets(int fd, uint16_t queue, int64_t delay_ns) {
  static char buf[RECV_BUFFER];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      if (errno == ENOBUFS) continue; /* dropped notifications: the next batch verdict covers them */
      die("recv");
    }
    int64_t due = now_ns() + delay_ns;
    for (struct nlmsghdr *nlh = (struct nlmsghdr *)buf; NLMSG_OK(nlh, (size_t)n); nlh = NLMSG_NEXT(nlh, n)) {
      if (nlh->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) continue;
      int len = (int)nlh->nlmsg_len - NLMSG_LENGTH(sizeof(struct nfgenmsg));
      struct nlattr *a = (struct nlattr *)((char *)NLMSG_DATA(nlh) + NLMSG_ALIGN(sizeof(struct nfgenmsg)));
      for (; len >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= len;
           len -= NLA_ALIGN(a->nla_len), a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len))) {
        if ((a->nla_type & NLA_TYPE_MASK) != NFQA_PACKET_HDR) continue;
        const struct nfqnl_msg_packet_hdr *ph = (const void *)((char *)a + NLA_HDRLEN);
        if (count == MAX_HELD) { /* full: let the oldest go early rather than lose track of it */
          accept_up_to(fd, queue, held[first].id);
          first = (first + 1) % MAX_HELD;
          count--;
        }
        held[(first + count) % MAX_HELD] = (struct held_packet){ ntohl(ph->packet_id), due };
        count++;
      }
    }
  }
}

static void on_signal(int sig) { (void)sig; stopping = 1; }

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: nfqueue-delay QUEUE DELAY_MS\n");
    return 2;
  }
  uint16_t queue = (uint16_t)atoi(argv[1]);
  int64_t delay_ns = (int64_t)(atof(argv[2]) * 1e6);

  int fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
  if (fd < 0) die("socket(NETLINK_NETFILTER)");
  int big = 8 << 20, one = 1;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  struct sockaddr_nl self = { .nl_family = AF_NETLINK };
  if (bind(fd, (struct sockaddr *)&self, sizeof self) < 0) die("bind");

  char buf[256];
  struct nlmsghdr *nlh = start_message(buf, NFQNL_MSG_CONFIG, queue, NLM_F_ACK);
  struct nfqnl_msg_config_cmd bind_cmd = { .command = NFQNL_CFG_CMD_BIND };
  put_attribute(nlh, NFQA_CFG_CMD, &bind_cmd, sizeof bind_cmd);
  configure(fd, nlh, "bind queue");

  nlh = start_message(buf, NFQNL_MSG_CONFIG, queue, NLM_F_ACK);
  struct nfqnl_msg_config_params params = { .copy_range = 0, .copy_mode = NFQNL_COPY_META };
  put_attribute(nlh, NFQA_CFG_PARAMS, &params, sizeof params);
  uint32_t max_len = htonl(MAX_HELD);
  put_attribute(nlh, NFQA_CFG_QUEUE_MAXLEN, &max_len, sizeof max_len);
  configure(fd, nlh, "configure queue");

  struct sigaction sa = { .sa_handler = on_signal };
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  printf("ready\n");
  fflush(stdout);

  struct pollfd pfd = { .fd = fd, .events = POLLIN };
  while (!stopping) {
    struct timespec wait, *timeout = NULL;
    if (count > 0) {
      int64_t left = held[first].due_ns - now_ns();
      if (left < 0) left = 0;
      wait = (struct timespec){ left / 1000000000, left % 1000000000 };
      timeout = &wait;
    }
    if (ppoll(&pfd, 1, timeout, NULL) < 0 && errno != EINTR) die("ppoll");
    if (pfd.revents & POLLIN) take_packets(fd, queue, delay_ns);
    release_due(fd, queue, 0);
  }
  release_due(fd, queue, 1);
  return 0;
}
