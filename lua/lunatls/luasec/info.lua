--- LuaSec's `conn:info()` fields, derived from the cipher's OpenSSL name (lunatls
-- reports the name and the protocol; this spells out what the name says, as
-- OpenSSL's `SSL_CIPHER_description` does).
-- @module lunatls.luasec.info

local M = {}

local MACS = { SHA = "SHA1", SHA256 = "SHA256", SHA384 = "SHA384" }

-- Kx and Au of a TLS 1.2 name ("ECDHE-ECDSA-...", "DHE-RSA-...", "AES256-...").
local function exchange(name)
  local kx, au = name:match("^(E?C?DHE)%-(%u+)%-")
  if kx == "ECDHE" then return "ECDH", au end
  if kx == "DHE" then return "DH", au end
  return "RSA", "RSA"
end

-- Enc, Mac and the key size from the name's cipher and digest parts.
local function encryption(name)
  local bits = name:match("AES_?(%d+)[_-]GCM")
  if bits then return ("AESGCM(%s)"):format(bits), "AEAD", tonumber(bits) end
  bits = name:match("AES_?(%d+)[_-]CCM")
  if bits then return ("AESCCM(%s)"):format(bits), "AEAD", tonumber(bits) end
  if name:find("CHACHA20", 1, true) then return "CHACHA20/POLY1305(256)", "AEAD", 256 end
  bits = name:match("AES(%d+)")
  if bits then return ("AES(%s)"):format(bits), MACS[name:match("%-(SHA%d*)$")] or "?", tonumber(bits) end
  return "?", "?", 0
end

--- The info table for a cipher name and protocol, or nil before a handshake.
function M.describe(cipher, protocol)
  if not cipher then return nil end
  local info = { cipher = cipher, protocol = protocol, export = false }
  if cipher:match("^TLS_") then
    info.key, info.authentication = "any", "any"
  else
    info.key, info.authentication = exchange(cipher)
  end
  local bits
  info.encryption, info.mac, bits = encryption(cipher)
  info.bits, info.algbits = bits + 0.0, bits + 0.0
  return info
end

return M
