--- Certificates the fixtures do not have, made on demand with the openssl
-- command (in a temporary folder, once per busted run), and what the openssl
-- command says about a certificate.
-- @module helpers.certs

local M = {}

local FIXTURES = "spec/fixtures/"

--- Runs a shell command; raises with its output when it fails.
local function run(command)
  local pipe = assert(io.popen(command .. " 2>&1", "r"))
  local output = pipe:read("a")
  local ok = pipe:close()
  if not ok then error(("command failed: %s\n%s"):format(command, output), 2) end
  return output
end

local function write_file(path, text)
  local file = assert(io.open(path, "wb"))
  assert(file:write(text))
  file:close()
end

local function read_file(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("a")
  file:close()
  return text
end

--- An intermediate CA named `name`, signed by the fixture CA, with the
-- extensions `ext` (openssl -extfile lines), in folder `dir`.
local function make_intermediate(dir, name, ext)
  local key, pem = dir .. "/" .. name .. ".key", dir .. "/" .. name .. ".pem"
  write_file(dir .. "/" .. name .. ".ext", ext)
  run(("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s"):format(key))
  run(("openssl req -new -key %s -subj '/O=lunatls tests/CN=lunatls %s' -out %s/%s.csr")
    :format(key, name, dir, name))
  run(("openssl x509 -req -in %s/%s.csr -CA %sca.pem -CAkey %sca.key -set_serial 7 -days 2 "
    .. "-extfile %s/%s.ext -out %s"):format(dir, name, FIXTURES, FIXTURES, dir, name, pem))
  return key, pem
end

local LEAF_EXTENSIONS = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"

--- A leaf with subject CN=localhost, the fixture server key and extensions
-- `ext`, signed by `ca_key`, `ca_pem`; returns the leaf's path, and the path of
-- a chain file (leaf, then the issuer).
local function make_leaf(dir, name, ca_key, ca_pem, ext)
  local leaf = dir .. "/" .. name .. "-leaf.pem"
  write_file(dir .. "/" .. name .. "-leaf.ext", LEAF_EXTENSIONS .. ext)
  run(("openssl req -new -key %sserver.key -subj '/O=lunatls tests/CN=localhost' -out %s/leaf.csr")
    :format(FIXTURES, dir))
  run(("openssl x509 -req -in %s/leaf.csr -CA %s -CAkey %s -set_serial 8 -days 2 "
    .. "-extfile %s/%s-leaf.ext -out %s"):format(dir, ca_pem, ca_key, dir, name, leaf))
  local chain = dir .. "/" .. name .. "-chain.pem"
  write_file(chain, read_file(leaf) .. read_file(ca_pem))
  return leaf, chain
end

local made, workdir

--- The temporary folder for this run's certificates.
local function folder()
  if not workdir then
    workdir = os.tmpname()
    os.remove(workdir)
    run("mkdir -p " .. workdir)
  end
  return workdir
end

--- A leaf for localhost signed by the fixture CA with the fixture server key
-- and the extension lines `ext` (e.g. "subjectAltName=DNS:w*.example\n"):
-- returns its path (use key `spec/fixtures/server.key`).
function M.leaf(name, ext)
  return (make_leaf(folder(), name, FIXTURES .. "ca.key", FIXTURES .. "ca.pem", ext))
end

--- Chains signed through an intermediate of the fixture CA, for the fixture
-- server key: `{chain = path, loose_chain = path, key = path}`. The loose
-- chain's intermediate has no keyUsage extension, which only x509_strict
-- rejects.
function M.intermediate_chains()
  if made then return made end
  local dir = folder()
  local key, pem = make_intermediate(dir, "intermediate",
    "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
    .. "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
  local loose_key, loose_pem = make_intermediate(dir, "loose",
    "basicConstraints=critical,CA:TRUE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
  local san = "subjectAltName=DNS:localhost\n"
  made = {
    key = FIXTURES .. "server.key",
    chain = select(2, make_leaf(dir, "intermediate", key, pem, san)),
    loose_chain = select(2, make_leaf(dir, "loose", loose_key, loose_pem, san)),
  }
  return made
end

--- Removes what `intermediate_chains` and `leaf` made (call it from `teardown`).
function M.cleanup()
  if workdir then
    run("rm -rf " .. workdir)
    made, workdir = nil, nil
  end
end

--- `openssl x509 -fingerprint -sha256` of a PEM file, normalised to the
-- core's form: lowercase hex without colons.
function M.openssl_fingerprint(path)
  local output = run("openssl x509 -noout -fingerprint -sha256 -in " .. path)
  local hex = assert(output:match("=([%x:]+)"), output)
  return (hex:gsub(":", ""):lower())
end

--- `openssl x509 -serial` of a PEM file: the hex digits after "serial=".
function M.openssl_serial(path)
  local output = run("openssl x509 -noout -serial -in " .. path)
  return assert(output:match("serial=(%x+)"), output)
end

--- `openssl x509 -enddate`/`-startdate` of a PEM file, as seconds since the
-- epoch (UTC), computed with `date`.
function M.openssl_date(path, which)
  local output = run(("openssl x509 -noout -%s -in %s"):format(which, path))
  local text = assert(output:match("=(.-)%s*$"), output)
  return tonumber((run(("date -u -d '%s' +%%s"):format(text)):gsub("%s+$", "")))
end

return M
