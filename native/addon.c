/*
 * gatehouse_native: the few syscalls Node does not offer, and nothing else.
 *
 * - listening sockets as raw fds that libuv never polls (the pool manager must
 *   hold the socket without accepting on it; a libuv-wrapped server accepts by
 *   itself), plus probes for the FCGI_LISTENSOCK_FILENO convention on fd 0;
 * - prctl(PR_SET_PDEATHSIG) for Node workers;
 * - a receiver for SOCK_SEQPACKET datagrams carrying SCM_RIGHTS fds (ashd's
 *   handler protocol, used by callscgi), driven by the env's own libuv loop.
 *
 * Policy (which address, which signal, what to do with a datagram) lives in
 * TypeScript. Errors are thrown as JS Errors whose `code` is the errno name
 * and whose message names the failing call, like Node's own errno errors.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SEQPACKET_PAYLOAD_MAX (64 * 1024)
#define SEQPACKET_CONTROL_MAX 1024

/* ---- error helpers ------------------------------------------------------ */

static napi_value make_errno_error(napi_env env, int err, const char *call, const char *detail) {
  char msg[512];
  const char *name = uv_err_name(uv_translate_sys_error(err));
  if (detail != NULL && detail[0] != '\0')
    snprintf(msg, sizeof msg, "%s %s: %s", call, detail, strerror(err));
  else
    snprintf(msg, sizeof msg, "%s: %s", call, strerror(err));
  napi_value js_msg, js_code, js_err, js_errno, js_syscall;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &js_msg);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &js_code);
  napi_create_error(env, js_code, js_msg, &js_err);
  napi_create_int32(env, -err, &js_errno);
  napi_create_string_utf8(env, call, NAPI_AUTO_LENGTH, &js_syscall);
  napi_set_named_property(env, js_err, "errno", js_errno);
  napi_set_named_property(env, js_err, "syscall", js_syscall);
  return js_err;
}

static void throw_errno(napi_env env, int err, const char *call, const char *detail) {
  napi_throw(env, make_errno_error(env, err, call, detail));
}

/* Returns 0 and sets a pending TypeError when the argument is not what we need. */
static int arg_int32(napi_env env, napi_value v, const char *what, int32_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_number) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a number", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return 0;
  }
  napi_get_value_int32(env, v, out);
  return 1;
}

static int arg_string(napi_env env, napi_value v, const char *what, char *buf, size_t cap) {
  napi_valuetype t;
  size_t len = 0;
  napi_typeof(env, v, &t);
  if (t != napi_string) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a string", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return 0;
  }
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  if (len + 1 > cap) {
    throw_errno(env, ENAMETOOLONG, "argument", what);
    return 0;
  }
  napi_get_value_string_utf8(env, v, buf, cap, &len);
  return 1;
}

static napi_value int_value(napi_env env, int32_t n) {
  napi_value v;
  napi_create_int32(env, n, &v);
  return v;
}

/* ---- listening sockets -------------------------------------------------- */

/* listenTcp(host, port, backlog) -> fd. host "" means every address (AI_PASSIVE). */
static napi_value listen_tcp(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char host[256], port_str[16];
  int32_t port, backlog;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!arg_string(env, argv[0], "host", host, sizeof host) || !arg_int32(env, argv[1], "port", &port) ||
      !arg_int32(env, argv[2], "backlog", &backlog))
    return NULL;
  snprintf(port_str, sizeof port_str, "%d", port);

  struct addrinfo hints, *res = NULL, *ai;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int gai = getaddrinfo(host[0] ? host : NULL, port_str, &hints, &res);
  if (gai != 0) {
    char msg[384];
    snprintf(msg, sizeof msg, "getaddrinfo %s: %s", host, gai_strerror(gai));
    napi_value js_msg, js_code, js_err;
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &js_msg);
    napi_create_string_utf8(env, gai == EAI_SYSTEM ? uv_err_name(uv_translate_sys_error(errno)) : "EAI_FAIL",
                            NAPI_AUTO_LENGTH, &js_code);
    if (gai == EAI_NONAME) napi_create_string_utf8(env, "ENOTFOUND", NAPI_AUTO_LENGTH, &js_code);
    napi_create_error(env, js_code, js_msg, &js_err);
    napi_throw(env, js_err);
    return NULL;
  }

  /* Try each resolved address; report the error of the last attempt. */
  int fd = -1, err = EADDRNOTAVAIL;
  const char *failed_call = "bind";
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) { err = errno; failed_call = "socket"; continue; }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
      err = errno; failed_call = "setsockopt"; close(fd); fd = -1; continue;
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) { err = errno; failed_call = "bind"; close(fd); fd = -1; continue; }
    if (listen(fd, backlog) < 0) { err = errno; failed_call = "listen"; close(fd); fd = -1; continue; }
    break;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    char detail[300];
    snprintf(detail, sizeof detail, "%s:%d", host[0] ? host : "*", port);
    throw_errno(env, err, failed_call, detail);
    return NULL;
  }
  return int_value(env, fd);
}

/* localPort(fd) -> the port a TCP socket is bound to (useful after port 0). */
static napi_value local_port(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!arg_int32(env, argv[0], "fd", &fd)) return NULL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) { throw_errno(env, errno, "getsockname", NULL); return NULL; }
  if (ss.ss_family == AF_INET) return int_value(env, ntohs(((struct sockaddr_in *)&ss)->sin_port));
  if (ss.ss_family == AF_INET6) return int_value(env, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
  throw_errno(env, EAFNOSUPPORT, "getsockname", "(not a TCP socket)");
  return NULL;
}

/*
 * listenUnix(path, backlog[, mode]) -> fd. Never unlinks: deciding whether an
 * existing path is stale is policy (a connect() probe in TypeScript). The mode
 * is applied between bind() and listen(), so there is no moment at which the
 * socket accepts connections with the umask's permissions.
 */
static napi_value listen_unix(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  struct sockaddr_un sun;
  char path[sizeof sun.sun_path + 1];
  int32_t backlog, mode = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!arg_string(env, argv[0], "path", path, sizeof path) || !arg_int32(env, argv[1], "backlog", &backlog)) return NULL;
  if (argc >= 3) {
    napi_valuetype t;
    napi_typeof(env, argv[2], &t);
    if (t != napi_undefined && !arg_int32(env, argv[2], "mode", &mode)) return NULL;
  }
  if (strlen(path) >= sizeof sun.sun_path) { throw_errno(env, ENAMETOOLONG, "bind", path); return NULL; }
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  strcpy(sun.sun_path, path);

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { throw_errno(env, errno, "socket", NULL); return NULL; }
  if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
    int e = errno; close(fd); throw_errno(env, e, "bind", path); return NULL;
  }
  if (mode >= 0 && chmod(path, (mode_t)mode) < 0) {
    int e = errno; close(fd); unlink(path); throw_errno(env, e, "chmod", path); return NULL;
  }
  if (listen(fd, backlog) < 0) {
    int e = errno; close(fd); unlink(path); throw_errno(env, e, "listen", path); return NULL;
  }
  return int_value(env, fd);
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!arg_int32(env, argv[0], "fd", &fd)) return NULL;
  /* EINTR on Linux still releases the descriptor: never retry close(). */
  if (close(fd) < 0 && errno != EINTR) throw_errno(env, errno, "close", NULL);
  return NULL;
}

/* isListeningSocket(fd): true when fd is a socket in the listening state (SO_ACCEPTCONN). */
static napi_value is_listening_socket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!arg_int32(env, argv[0], "fd", &fd)) return NULL;
  int accepting = 0;
  socklen_t len = sizeof accepting;
  int ok = getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 && accepting != 0;
  napi_get_boolean(env, ok, &result);
  return result;
}

/* setNonBlocking(fd, on): O_NONBLOCK on the open file description (shared by every process holding it). */
static napi_value set_non_blocking(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  bool on = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!arg_int32(env, argv[0], "fd", &fd)) return NULL;
  if (argc < 2 || napi_get_value_bool(env, argv[1], &on) != napi_ok) {
    napi_throw_type_error(env, NULL, "on must be a boolean");
    return NULL;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK)) < 0) throw_errno(env, errno, "fcntl", "O_NONBLOCK");
  return NULL;
}

/*
 * moveFromStdin(): the socket on fd 0 moved to a new close-on-exec fd (>= 3),
 * returned; fd 0 becomes /dev/null. Node restores fd 0's O_NONBLOCK flag to
 * its startup value when it exits: on a listening socket shared with other
 * workers that would make their accept() block. Once fd 0 is another file,
 * Node leaves the socket alone.
 */
static napi_value move_from_stdin(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = fcntl(0, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) { throw_errno(env, errno, "fcntl", "F_DUPFD_CLOEXEC"); return NULL; }
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0 || dup2(null_fd, 0) < 0) {
    int e = errno;
    if (null_fd >= 0) close(null_fd);
    close(fd);
    throw_errno(env, e, null_fd < 0 ? "open" : "dup2", "/dev/null");
    return NULL;
  }
  close(null_fd);
  return int_value(env, fd);
}

/* setPdeathsig(signal): the kernel sends `signal` to us when our parent thread dies. */
static napi_value set_pdeathsig(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t sig;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!arg_int32(env, argv[0], "signal", &sig)) return NULL;
  if (prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0) < 0) throw_errno(env, errno, "prctl", "PR_SET_PDEATHSIG");
  return NULL;
}

/* ---- SOCK_SEQPACKET receiver ------------------------------------------- */

/*
 * Lifetime: the struct is reachable from libuv (poll handle) and from JS (the
 * `stop` function's data). It is freed only when both are done: the handle
 * closed AND the stop function finalized, so a late stop() is always safe.
 */
typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context async_ctx;
  int fd;
  int polling;       /* uv_poll_start active */
  int handle_closed; /* uv_close callback has run */
  int js_released;   /* stop function finalized */
  char *payload;
} seqpacket_receiver;

static void receiver_maybe_free(seqpacket_receiver *r) {
  if (r->handle_closed && r->js_released) {
    free(r->payload);
    free(r);
  }
}

static void on_poll_closed(uv_handle_t *h) {
  seqpacket_receiver *r = (seqpacket_receiver *)h->data;
  r->handle_closed = 1;
  receiver_maybe_free(r);
}

static void receiver_cleanup_hook(void *arg);

/* Stops polling and drops the JS callback; idempotent. */
static void receiver_stop(seqpacket_receiver *r) {
  if (!r->polling) return;
  r->polling = 0;
  uv_poll_stop(&r->poll);
  napi_remove_env_cleanup_hook(r->env, receiver_cleanup_hook, r);
  napi_delete_reference(r->env, r->callback);
  napi_async_destroy(r->env, r->async_ctx);
  uv_close((uv_handle_t *)&r->poll, on_poll_closed);
}

static void receiver_cleanup_hook(void *arg) { receiver_stop((seqpacket_receiver *)arg); }

static void receiver_emit(seqpacket_receiver *r, napi_value err, napi_value payload, int passed_fd) {
  napi_env env = r->env;
  napi_value cb, recv, argv[3], result;
  napi_get_reference_value(env, r->callback, &cb);
  napi_get_global(env, &recv); /* napi_make_callback insists on an object receiver */
  argv[0] = err;
  argv[1] = payload;
  argv[2] = int_value(env, passed_fd);
  /* napi_make_callback runs nextTick/microtasks and routes a throw to uncaughtException. */
  napi_make_callback(env, r->async_ctx, recv, cb, 3, argv, &result);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  seqpacket_receiver *r = (seqpacket_receiver *)h->data;
  napi_env env = r->env;
  napi_handle_scope scope;
  napi_value js_null;
  (void)events;
  napi_open_handle_scope(env, &scope);
  napi_get_null(env, &js_null);

  if (status < 0) {
    receiver_emit(r, make_errno_error(env, -status, "uv_poll", NULL), js_null, -1); /* libuv codes are -errno on Unix */
    receiver_stop(r);
    napi_close_handle_scope(env, scope);
    return;
  }

  /* Drain every queued datagram; the callback may call stop() in between. */
  while (r->polling) {
    union {
      struct cmsghdr align;
      char buf[SEQPACKET_CONTROL_MAX];
    } control;
    struct iovec iov = {r->payload, SEQPACKET_PAYLOAD_MAX};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;

    ssize_t n = recvmsg(r->fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      receiver_emit(r, make_errno_error(env, errno, "recvmsg", NULL), js_null, -1);
      receiver_stop(r);
      break;
    }

    /* Take the first passed fd; close any extras so they cannot leak. */
    int passed_fd = -1;
    struct cmsghdr *c;
    for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      int *fds = (int *)CMSG_DATA(c);
      for (size_t i = 0; i < count; i++) {
        if (passed_fd < 0) passed_fd = fds[i];
        else close(fds[i]);
      }
    }

    if (n == 0 && passed_fd < 0) { /* orderly EOF: the peer closed */
      receiver_emit(r, js_null, js_null, -1);
      receiver_stop(r);
      break;
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
      /* Datagram boundaries are kept, so reporting and going on is safe. */
      if (passed_fd >= 0) close(passed_fd);
      receiver_emit(r, make_errno_error(env, EMSGSIZE, "recvmsg", "(datagram or control data truncated)"), js_null, -1);
      continue;
    }
    napi_value payload;
    void *data;
    napi_create_buffer_copy(env, (size_t)n, r->payload, &data, &payload);
    receiver_emit(r, js_null, payload, passed_fd);
  }
  napi_close_handle_scope(env, scope);
}

static napi_value receiver_stop_js(napi_env env, napi_callback_info info) {
  void *data;
  size_t argc = 0;
  napi_get_cb_info(env, info, &argc, NULL, NULL, &data);
  receiver_stop((seqpacket_receiver *)data);
  return NULL;
}

static void receiver_js_finalize(napi_env env, void *data, void *hint) {
  seqpacket_receiver *r = (seqpacket_receiver *)data;
  (void)env; (void)hint;
  r->js_released = 1;
  receiver_maybe_free(r);
}

/* startSeqpacketReceiver(fd, callback) -> { stop() }. The fd stays the caller's to close. */
static napi_value start_seqpacket_receiver(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  napi_valuetype t;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!arg_int32(env, argv[0], "fd", &fd)) return NULL;
  napi_typeof(env, argv[1], &t);
  if (t != napi_function) { napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "callback must be a function"); return NULL; }

  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) { throw_errno(env, errno, "fcntl", "O_NONBLOCK"); return NULL; }

  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) { throw_errno(env, EINVAL, "napi_get_uv_event_loop", NULL); return NULL; }

  seqpacket_receiver *r = calloc(1, sizeof *r);
  char *payload = malloc(SEQPACKET_PAYLOAD_MAX);
  if (r == NULL || payload == NULL) { free(r); free(payload); throw_errno(env, ENOMEM, "malloc", NULL); return NULL; }
  r->payload = payload;
  r->env = env;
  r->fd = fd;
  int rc = uv_poll_init(loop, &r->poll, fd);
  if (rc < 0) { free(payload); free(r); throw_errno(env, -rc, "uv_poll_init", NULL); return NULL; }
  r->poll.data = r;

  napi_value resource, resource_name, stop_fn, handle;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "gatehouse:seqpacket", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, resource, resource_name, &r->async_ctx);
  napi_create_reference(env, argv[1], 1, &r->callback);

  rc = uv_poll_start(&r->poll, UV_READABLE | UV_DISCONNECT, on_readable);
  if (rc < 0) {
    napi_delete_reference(env, r->callback);
    napi_async_destroy(env, r->async_ctx);
    r->js_released = 1; /* no JS object will ever reference it */
    uv_close((uv_handle_t *)&r->poll, on_poll_closed);
    throw_errno(env, -rc, "uv_poll_start", NULL);
    return NULL;
  }
  r->polling = 1;
  napi_add_env_cleanup_hook(env, receiver_cleanup_hook, r);

  napi_create_function(env, "stop", NAPI_AUTO_LENGTH, receiver_stop_js, r, &stop_fn);
  napi_add_finalizer(env, stop_fn, r, receiver_js_finalize, NULL, NULL);
  napi_create_object(env, &handle);
  napi_set_named_property(env, handle, "stop", stop_fn);
  return handle;
}

/* ---- module ------------------------------------------------------------- */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"listenTcp", NULL, listen_tcp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"localPort", NULL, local_port, NULL, NULL, NULL, napi_enumerable, NULL},
      {"listenUnix", NULL, listen_unix, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isListeningSocket", NULL, is_listening_socket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setNonBlocking", NULL, set_non_blocking, NULL, NULL, NULL, napi_enumerable, NULL},
      {"moveFromStdin", NULL, move_from_stdin, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setPdeathsig", NULL, set_pdeathsig, NULL, NULL, NULL, napi_enumerable, NULL},
      {"startSeqpacketReceiver", NULL, start_seqpacket_receiver, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
