--- LuaSec's `ssl.x509` certificate objects, on top of `lunatls.Certificate`.
--
-- The methods return what LuaSec 1.2 returns: `subject()`/`issuer()` are lists
-- of `{oid =, name =, value =}` in certificate order (most general first),
-- `extensions()` is keyed by OID with `subjectAltName`-style tables,
-- `notbefore()`/`notafter()` are OpenSSL's `"Mon DD HH:MM:SS YYYY GMT"`,
-- `digest()` is lowercase hex (sha1 by default), `serial()` uppercase hex.
-- @module lunatls.luasec.x509

local M = {}

local Cert = {}
Cert.__index = Cert
Cert.__name = "X509 certificate"

-- Short names (RFC 2253 / OpenSSL) to OID and long name.
local ATTRIBUTES = {
  CN = { "2.5.4.3", "commonName" },
  C = { "2.5.4.6", "countryName" },
  L = { "2.5.4.7", "localityName" },
  ST = { "2.5.4.8", "stateOrProvinceName" },
  STREET = { "2.5.4.9", "streetAddress" },
  O = { "2.5.4.10", "organizationName" },
  OU = { "2.5.4.11", "organizationalUnitName" },
  serialNumber = { "2.5.4.5", "serialNumber" },
  emailAddress = { "1.2.840.113549.1.9.1", "emailAddress" },
  DC = { "0.9.2342.19200300.100.1.25", "domainComponent" },
  UID = { "0.9.2342.19200300.100.1.1", "userId" },
}

--- Wraps a `lunatls.Certificate`.
function M.new(cert)
  return setmetatable({ cert = cert }, Cert)
end

-- Splits an RFC 2253 string at unescaped commas/pluses, undoing escapes.
local function rdn_parts(dn)
  local parts, current, i = {}, {}, 1
  while i <= #dn do
    local ch = dn:sub(i, i)
    if ch == "\\" then
      local hex = dn:match("^%x%x", i + 1)
      current[#current + 1] = hex and string.char(tonumber(hex, 16)) or dn:sub(i + 1, i + 1)
      i = i + (hex and 3 or 2)
    else
      if ch == "," or ch == "+" then
        parts[#parts + 1] = table.concat(current)
        current = {}
      else
        current[#current + 1] = ch
      end
      i = i + 1
    end
  end
  parts[#parts + 1] = table.concat(current)
  return parts
end

-- An RFC 2253 name as LuaSec's list, most general attribute first.
local function name_list(dn)
  local list = {}
  if dn == nil or dn == "" then return list end
  local parts = rdn_parts(dn)
  for k = #parts, 1, -1 do
    local short, value = parts[k]:match("^([^=]+)=(.*)$")
    local known = ATTRIBUTES[short] or { short, short }
    list[#list + 1] = { oid = known[1], name = known[2], value = value }
  end
  return list
end

--- Subject as a list of `{oid, name, value}`.
function Cert:subject()
  return name_list(self.cert:subject())
end

--- Issuer as a list of `{oid, name, value}`.
function Cert:issuer()
  return name_list(self.cert:issuer())
end

-- A SAN's LuaSec kind, guessed from its text form (lunatls gives strings).
local function san_kind(value)
  if value:match("^%d+%.%d+%.%d+%.%d+$") or value:find(":", 1, true) and not value:find("/", 1, true) then
    return "iPAddress"
  elseif value:find("://", 1, true) then
    return "uniformResourceIdentifier"
  elseif value:find("@", 1, true) then
    return "rfc822Name"
  end
  return "dNSName"
end

--- Extensions: only subjectAltName (OID 2.5.29.17) is decoded, as LuaSec
-- decodes it: `{name = "X509v3 Subject Alternative Name", dNSName = {...},
-- iPAddress = {...}}`.
function Cert:extensions()
  local names = self.cert:subject_alt_names()
  if #names == 0 then return {} end
  local san = { name = "X509v3 Subject Alternative Name" }
  for _, value in ipairs(names) do
    local kind = san_kind(value)
    san[kind] = san[kind] or {}
    table.insert(san[kind], value)
  end
  return { ["2.5.29.17"] = san }
end

local function asn1_time(seconds)
  return (os.date("!%b %e %H:%M:%S %Y GMT", seconds))
end

--- notBefore as OpenSSL prints it.
function Cert:notbefore()
  return asn1_time(self.cert:not_before())
end

--- notAfter as OpenSSL prints it.
function Cert:notafter()
  return asn1_time(self.cert:not_after())
end

--- Is the certificate valid at `time` (seconds, default now)?
function Cert:validat(time)
  time = time or os.time()
  return time >= self.cert:not_before() and time <= self.cert:not_after()
end

--- Serial number, uppercase hex.
function Cert:serial()
  return (self.cert:serial():upper())
end

--- Lowercase hex digest of the DER: "sha1" (default), "sha256", "sha512"...
function Cert:digest(algorithm)
  return (self.cert:fingerprint(algorithm or "sha1"):lower():gsub(":", ""))
end

--- PEM text.
function Cert:pem()
  return self.cert:pem()
end

--- LuaSec's string encoding switch: lunatls always gives UTF-8.
function Cert.setencode(_, encoding)
  return encoding == "utf8" or encoding == "ascii"
end

--- The `lunatls.Certificate` underneath (lunatls extension).
function Cert:lunatls()
  return self.cert
end

Cert.__eq = function(a, b) return a.cert == b.cert end
Cert.__tostring = function(self)
  return ("X509 certificate: %p"):format(self)
end

--- Loads a PEM certificate (LuaSec's `ssl.loadcertificate`): the first of
-- the text; nil, message when there is none.
function M.load(pem)
  if type(pem) ~= "string" then
    error("bad argument #1 to 'loadcertificate' (string expected, got " .. type(pem) .. ")", 2)
  end
  local list, message = require("lunatls").load_certificates(pem)
  if not list or not list[1] then return nil, message or "no certificate" end
  return M.new(list[1])
end

M.Cert = Cert
return M
