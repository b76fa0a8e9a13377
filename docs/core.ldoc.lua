--- The C core, `lunatls.core` (src/*.c), for LDoc.
--
-- `require "lunatls"` gives these functions plus the Lua layer. Results follow
-- one convention, written once in [docs/api.md](../topics/api.md.html#Statuses_and_error_codes):
-- a caller's mistake raises; what the peer, the network or a file caused returns
-- `nil, message, code`; an operation to repeat after I/O returns a status word
-- (`"done"`, `"want_read"`, `"want_write"`, `"closed"`).
--
-- This file holds the LDoc text of the C functions instead of comments beside
-- them in src/: src/conn.c, src/context.c and src/errors.c change often, and
-- documentation kept apart cannot collide with those changes. Each entry names
-- its C function; spec/42-tooling_spec.lua checks that the names here are
-- exactly those of the real module and classes.
-- @module lunatls.core

local core = {}

--- Creates a context (`SSL_CTX`), configured once (C: `context_new`, src/context.c).
-- Unknown keys and wrong types raise.
-- @tparam table options `mode` ("client" | "server", required), `certificate`, `key`,
-- `password`, `ca`, `cafile`, `capath`, `verify` ("none" | "peer" | "require"),
-- `verify_depth`, `verify_flags`, `check_hostname`, `min_version`, `max_version`,
-- `ciphers`, `ciphersuites`, `groups`, `alpn`, `servername`, `session_cache`,
-- `tickets`, `keylog`, `client_hello`, `security_level`, `sigalgs`, `client_ca`,
-- `ticket_keys`, `session_cache_size`, `post_handshake_auth`, `pkcs12`, `crl`,
-- `ocsp`, `ocsp_staple` (docs/api.md has the table)
-- @return a `Context`, or nil, message, "config"
function core.new_context(options) end

--- Creates a BIO pair (C: `bio_new_pair`, src/bio.c): two ends with a fixed
-- buffer each way.
-- @tparam[opt] integer size bytes buffered each way
-- @return two `BIO` ends
function core.new_bio_pair(size) end

--- Imports a session exported by `Session:export` (C: `session_import`, src/session.c).
-- @tparam string text PEM text
-- @return a `Session`, or nil, message, "config"
function core.import_session(text) end

--- Every certificate of PEM text, DER bytes, or a file of either (C: `certificates_load`, src/x509.c).
-- @tparam string source
-- @return a list of `Certificate`, or nil, message, "config"
function core.load_certificates(source) end

--- After a burst of connections, gives back the memory they left behind (C:
-- `release_memory`, src/core.c): two full collections (Lua frees what a
-- finalizer let go only in the collection after it ran), the BIO pairs'
-- cached rings, then glibc's free pages (`malloc_trim(0)`), which glibc
-- otherwise keeps for the life of the process. About 45 ms after 2,000
-- handshaking client and server pairs went, 0.15 ms when there is nothing
-- to give back.
-- @treturn boolean whether the allocator gave memory back to the system
function core.release_memory() end

--- A Buffer of `capacity` bytes (1 to 2^30) for `Conn:read_into` (C: `buffer_new`, src/buffer.c).
-- @tparam integer capacity
-- @treturn Buffer an empty buffer
function core.new_buffer(capacity) end

--- A Poller: the kernel's readiness queue (epoll; C: `poller_new`, src/poller.c), what the
-- bundled scheduler's `"epoll"` backend waits in.
-- @return a `Poller`; or nil, message, code (`"syscall"`: no descriptor left for it;
-- `"unsupported"`: not Linux)
function core.new_poller() end

--- The version of lunatls (the VERSION file, passed with -DLUNATLS_VERSION).
core._VERSION = "0.2.0"

--- OpenSSL's version string, as `OpenSSL_version(OPENSSL_VERSION)` gives it.
core.OPENSSL_VERSION = "OpenSSL 3.0.x"

--- lunatls.Context: an `SSL_CTX`, immutable (src/context.c).
-- @type Context
local Context = {}

--- Creates a connection (C: `lunatls_conn_new`, src/conn.c).
-- @tparam[opt] table options `server_name`, `bio`, `fd`, `close_fd`, `check_fd`, `read_ahead`, `buffer_size`,
-- `session`, `alpn`, `callback_errors` (docs/api.md)
-- @return a `Conn`
function Context:new_conn(options) end

--- "client" or "server" (C: `context_mode`).
function Context:mode() end

--- lunatls.Conn: an `SSL` (src/conn.c). Every method raises
-- `attempt to use a closed lunatls.Conn` once it is closed.
-- @type Conn
local Conn = {}

--- One step of the handshake (C: `conn_do_handshake`; `SSL_do_handshake`).
-- @return "done", "want_read", "want_write", or nil, message, code
function Conn:do_handshake() end

--- Reads decrypted data (C: `conn_read`; `SSL_read_ex`).
-- @tparam[opt=16384] integer max
-- @return data, or nil, status, or nil, message, code
function Conn:read(max) end

--- Reads decrypted data into a Buffer instead of a new string (C:
-- `conn_read_into`): the records that are here, up to `max` (default: the
-- buffer's capacity), replace what `buffer` held; after a failure it holds
-- nothing. For programs that forward or count what they read.
-- @tparam Buffer buffer
-- @tparam[opt] integer max
-- @return bytes read, or nil, status, or nil, message, code
function Conn:read_into(buffer, max) end

--- Writes data (C: `conn_write`; `SSL_write_ex`). After a short count the next
-- write must begin with the bytes not taken.
-- With `i`, `j`: `data:sub(i, j)` without copying it (`conn:write(data, taken + 1)` retries).
-- `data` may be a Buffer: what it holds is written, without a string.
-- @tparam string|Buffer data
-- @tparam[opt] integer i
-- @tparam[opt] integer j
-- @return bytes taken, or nil, status, or nil, message, code
function Conn:write(data, i, j) end

--- Sends close_notify and waits for the peer's (C: `conn_shutdown`; `SSL_shutdown`).
-- @return "done", "want_read", "want_write", or nil, message, code
function Conn:shutdown() end

--- Frees the connection; never does I/O (C: `conn_close`; also `__gc`, `__close`).
function Conn:close() end

--- Makes this connection a client (C: `conn_set_connect_state`).
function Conn:set_connect_state() end

--- Makes this connection a server (C: `conn_set_accept_state`).
function Conn:set_accept_state() end

--- TLS 1.3 key update (C: `conn_key_update`).
-- @tparam[opt] boolean request_peer ask the peer to update too
-- @return true, or nil, message, "protocol"
function Conn:key_update(request_peer) end

--- The protocol version ("TLSv1.3"), nil before the handshake (C: `conn_version`).
function Conn:version() end

--- The cipher's OpenSSL name, nil before the handshake (C: `conn_cipher`).
function Conn:cipher() end

--- The ALPN protocol agreed, or nil (C: `conn_alpn_selected`).
function Conn:alpn_selected() end

--- The SNI name (sent, or received), or nil (C: `conn_server_name`).
function Conn:server_name() end

--- The peer's certificate, or nil (C: `conn_peer_certificate`).
-- @return a `Certificate`
function Conn:peer_certificate() end

--- The chain the peer sent, its own certificate first (C: `conn_peer_chain`).
-- @return a list of `Certificate`
function Conn:peer_chain() end

--- The verification result (C: `conn_verify_result`).
-- @return code, message (`0, "ok"`)
function Conn:verify_result() end

--- The session to resume later, or nil (C: `conn_session`).
-- @return a `Session`
function Conn:session() end

--- Was the session resumed? (C: `conn_session_reused`)
function Conn:session_reused() end

--- RFC 5705 / RFC 8446 exporter (C: `conn_export_keying_material`).
-- @tparam string label
-- @tparam integer length 1 to 16384
-- @tparam[opt] string context
-- @return bytes, or nil, message, "protocol"
function Conn:export_keying_material(label, length, context) end

--- Decrypted bytes buffered inside OpenSSL (C: `conn_pending`; `SSL_pending`).
function Conn:pending() end

--- Whether a read may give something without new bytes from the transport:
-- decrypted bytes, records read ahead (option `read_ahead`), or bytes in the
-- BIO pair (C: `conn_has_pending`; `SSL_has_pending`, `BIO_ctrl_pending`).
-- Also true for part of a record, which a read cannot give yet.
-- @treturn boolean
function Conn:has_pending() end

--- The network end of the connection's own BIO pair, or nil (C: `conn_bio`).
function Conn:bio() end

--- Server, context made with `client_hello = true`: the ClientHello the handshake paused on
-- (`do_handshake()` said `"want_certificate"`), as `{server_name =, alpn =, versions =, ciphers =,
-- groups =, signature_algorithms =}`; nil before (C: `lunatls_conn_client_hello`, src/hello.c).
function Conn:client_hello() end

--- While the handshake waits with `"want_certificate"`: adopt the server context `ctx` whole
-- (certificate, key, chain, trust, verify, versions, ciphers, ALPN, sessions), or refuse the client
-- with `false` (alert unrecognized_name); the next `do_handshake()` goes on
-- (C: `lunatls_conn_set_context`, src/hello.c).
-- @tparam Context|false ctx
function Conn:set_context(ctx) end

--- A channel binding: `"tls-exporter"` (RFC 9266), `"tls-server-end-point"` (RFC 5929) or
-- `"tls-unique"` (TLS 1.2 only); bytes, or nil, message, "protocol" (C: `lunatls_conn_channel_binding`,
-- src/binding.c).
-- @string kind
function Conn:channel_binding(kind) end

--- The negotiated key-exchange group (`"x25519"`, `"secp256r1"`), nil before the handshake
-- (C: `conn_group`).
function Conn:group() end

--- Server, TLS 1.3: ask the client (made with `post_handshake_auth = true`) for its certificate; the
-- next write or read carries the exchange. true, or nil, message, "protocol"
-- (C: `conn_verify_client_post_handshake`).
function Conn:verify_client_post_handshake() end

--- Client made with `ocsp = "request"|"require"`: what the server's OCSP staple says, `"good"`,
-- `"revoked"`, `"unknown"`, `"none"` (none stapled) or `"invalid"` (did not verify), then a message
-- (C: `lunatls_conn_ocsp_status`, src/revocation.c).
function Conn:ocsp_status() end

--- lunatls.BIO: one end of a BIO pair (src/bio.c).
-- @type BIO
local BIO = {}

--- Bytes taken; 0 when the buffer is full (C: `bio_write`). With `i`, `j`: `data:sub(i, j)`,
-- without copying it.
-- @return count, or nil, "closed"
function BIO:write(data, i, j) end

--- A string, nil, "want_read" when empty, nil, "closed" after the other end
-- shut down writing (C: `bio_read`).
function BIO:read(max) end

--- Bytes waiting to be read from this end (C: `bio_pending`).
function BIO:pending() end

--- `BIO_ctrl_get_write_guarantee` (C: `bio_write_guarantee`).
function BIO:write_guarantee() end

--- `BIO_ctrl_get_read_request` (C: `bio_read_request`).
function BIO:read_request() end

--- Signals end of stream to the other end (C: `bio_shutdown_write`).
function BIO:shutdown_write() end

--- Frees this end (C: `bio_close`; also `__gc`, `__close`).
function BIO:close() end

--- Moves what this end has to read into the end `other` (at most `max` bytes), ring to ring, no
-- Lua string between; only what `other` takes is read (C: `bio_move_to`).
-- @return bytes moved, or nil, "closed" when `other` was shut down or freed
function BIO:move_to(other, max) end

--- Sends what this end has to read into the socket `fd`, in C (C: `bio_send_to`): as much as the
-- socket takes now (nonblocking, no SIGPIPE); the rest stays.
-- @tparam integer fd
-- @return bytes sent (0: the socket takes nothing now), or nil, message, "eof" | "syscall"
function BIO:send_to(fd) end

--- Receives from the socket `fd` into the end the other reads, no more than it has room for,
-- at most `max` (default 64 KiB) (C: `bio_receive_from`).
-- @tparam integer fd
-- @tparam[opt] integer max
-- @return bytes received (0: no room), or nil, "want_read" | "closed", or nil, message, code
function BIO:receive_from(fd, max) end

--- lunatls.Certificate: an X509, read-only (src/x509.c). `==` compares two.
-- @type Certificate
local Certificate = {}

--- Subject, RFC 2253 ("CN=localhost,O=Example") (C: `cert_subject`).
function Certificate:subject() end

--- Issuer, RFC 2253 (C: `cert_issuer`).
function Certificate:issuer() end

--- Subject alternative names as strings; with `typed`, as `{type = "dns"|"ip"|"email"|"uri", value =}`
-- (C: `cert_subject_alt_names`).
-- @tparam[opt] boolean typed
function Certificate:subject_alt_names(typed) end

--- notBefore, seconds since the epoch (C: `cert_not_before`).
function Certificate:not_before() end

--- notAfter, seconds since the epoch (C: `cert_not_after`).
function Certificate:not_after() end

--- Serial number, hex (C: `cert_serial`).
function Certificate:serial() end

--- Lowercase hex digest of the DER (C: `cert_fingerprint`).
-- @tparam[opt="sha256"] string digest
function Certificate:fingerprint(digest) end

--- PEM text (C: `cert_pem`).
function Certificate:pem() end

--- The public key's type (`"ec"`, `"rsa"`, `"ed25519"`, ...) and size in bits (C: `cert_public_key`).
function Certificate:public_key() end

--- The signature algorithm's name, `"ecdsa-with-SHA256"` (C: `cert_signature_algorithm`).
function Certificate:signature_algorithm() end

--- lunatls.Buffer: a fixed block of memory that `Conn:read_into` fills and
-- `Conn:write`/`BIO:write` send from (src/buffer.c). `#buffer` is the bytes it holds.
-- @type Buffer
local Buffer = {}

--- What it holds, or its part from `i` to `j` (string.sub's positions), as a string.
-- @tparam[opt] integer i
-- @tparam[opt] integer j
function Buffer:tostring(i, j) end

--- The bytes it holds (also `#buffer`).
function Buffer:len() end

--- The bytes it can hold.
function Buffer:capacity() end

--- Holds nothing from now on (its memory is kept).
function Buffer:clear() end

--- lunatls.Poller: an epoll set whose registrations are one-shot: a descriptor, once
-- reported, stays registered but silent until `set` again (src/poller.c).
-- @type Poller
local Poller = {}

--- Arms `fd` for one report of `bits` (1 readable, 2 writable, 3 either).
-- @tparam integer fd
-- @tparam integer bits
-- @tparam[opt] boolean known it was set before (tried as a change first)
-- @return true, or nil, message, code (`"closed"`: `fd` is not open; `"syscall"`)
function Poller:set(fd, bits, known) end

--- Waits at most `milliseconds` (0: only looks) for armed descriptors; stores the k-th
-- report's descriptor and bits (an error or hang-up reads as 3) at `out[2k - 1]`, `out[2k]`.
-- @tparam integer milliseconds
-- @tparam table out
-- @treturn integer how many were reported (at most 256; the rest wait for the next call)
function Poller:wait(milliseconds, out) end

--- Gives its descriptor back (also when collected); idempotent.
function Poller:close() end

--- lunatls.Session: a TLS session to resume (src/session.c).
-- @type Session
local Session = {}

--- PEM text that `import_session` reads back (C: `session_export`).
function Session:export() end

--- Can it be resumed? (C: `session_is_resumable`)
function Session:is_resumable() end

--- The protocol version it was made with (C: `session_protocol`).
function Session:protocol() end

return core
