// IKEv2 registries (RFC 7296 section 3, IANA "Internet Key Exchange Version 2 (IKEv2) Parameters").
// Names follow the IANA registry; each block cites where its values are defined.

/** RFC 7296 3.1: IKE header, fixed 28 octets. */
export const IKE_HEADER_LEN = 28
/** RFC 7296 3.2: generic payload header. */
export const PAYLOAD_HEADER_LEN = 4
/** RFC 7296 3.1: Major version 2, minor 0, in one octet. */
export const IKE_VERSION = 0x20
export const IKE_SPI_LEN = 8
export const ESP_SPI_LEN = 4
/** RFC 3948 2.2: four zero octets in front of IKE on the NAT-T port. */
export const NON_ESP_MARKER_LEN = 4

/** RFC 7296 3.1, IANA "IKEv2 Exchange Types". */
export const ExchangeType = {
  IKE_SA_INIT: 34,
  IKE_AUTH: 35,
  CREATE_CHILD_SA: 36,
  INFORMATIONAL: 37,
} as const

/** RFC 7296 3.1 flags octet. */
export const HeaderFlag = {
  INITIATOR: 0x08,
  VERSION: 0x10,
  RESPONSE: 0x20,
} as const

/** RFC 7296 3.2, IANA "IKEv2 Payload Types". */
export const PayloadType = {
  NONE: 0,
  SA: 33,
  KE: 34,
  IDi: 35,
  IDr: 36,
  CERT: 37,
  CERTREQ: 38,
  AUTH: 39,
  NONCE: 40,
  NOTIFY: 41,
  DELETE: 42,
  VENDOR: 43,
  TSi: 44,
  TSr: 45,
  SK: 46,
  CP: 47,
  EAP: 48,
  SKF: 53,
} as const
/** RFC 7296 3.2: bit 7 of the second octet of the generic payload header. */
export const CRITICAL_FLAG = 0x80

/** RFC 7296 3.3.1 Protocol ID. */
export const ProtocolId = { IKE: 1, AH: 2, ESP: 3 } as const

/** RFC 7296 3.3.2 Transform Type. */
export const TransformType = { ENCR: 1, PRF: 2, INTEG: 3, DH: 4, ESN: 5 } as const

/** IANA "Transform Type 1 - Encryption Algorithm Transform IDs" (AEAD only: RFC 5282, RFC 7634). */
export const EncrId = { AES_GCM_16: 20, CHACHA20_POLY1305: 28 } as const

/** IANA "Transform Type 2 - Pseudorandom Function Transform IDs" (RFC 4868). */
export const PrfId = { HMAC_SHA2_256: 5, HMAC_SHA2_384: 6, HMAC_SHA2_512: 7 } as const

/** IANA "Transform Type 4 - Key Exchange Method Transform IDs" (RFC 5903, RFC 8031). */
export const DhGroup = { NONE: 0, ECP_256: 19, ECP_384: 20, CURVE25519: 31 } as const

/** RFC 7296 3.3.2 Transform Type 5. */
export const EsnId = { NO_ESN: 0, ESN: 1 } as const

/** RFC 7296 3.3.5 attribute types; Key Length is TV (AF bit set). */
export const AttributeType = { KEY_LENGTH: 14 } as const
export const ATTRIBUTE_TV_FLAG = 0x8000

/** RFC 7296 3.3.1/3.3.2 "last substructure" markers. */
export const LAST_PROPOSAL = 0
export const MORE_PROPOSALS = 2
export const LAST_TRANSFORM = 0
export const MORE_TRANSFORMS = 3

/** RFC 7296 3.5, IANA "IKEv2 Identification Payload ID Types". */
export const IdType = { ID_IPV4_ADDR: 1, ID_FQDN: 2, ID_RFC822_ADDR: 3, ID_IPV6_ADDR: 5, ID_KEY_ID: 11 } as const

/** RFC 7296 3.8 and RFC 7427 section 3, IANA "IKEv2 Authentication Method". */
export const AuthMethod = {
  RSA_SIG: 1,
  SHARED_KEY_MIC: 2,
  DSS_SIG: 3,
  ECDSA_SHA256_P256: 9,
  ECDSA_SHA384_P384: 10,
  ECDSA_SHA512_P521: 11,
  DIGITAL_SIGNATURE: 14,
} as const

/** RFC 7427 section 4 / RFC 8420, IANA "IKEv2 Hash Algorithms". */
export const HashAlgorithm = { SHA1: 1, SHA2_256: 2, SHA2_384: 3, SHA2_512: 4, IDENTITY: 5 } as const

/** RFC 7296 3.10.1, IANA "IKEv2 Notify Message Types" (error types < 16384, status types >= 16384). */
export const NotifyType = {
  UNSUPPORTED_CRITICAL_PAYLOAD: 1,
  INVALID_IKE_SPI: 4,
  INVALID_MAJOR_VERSION: 5,
  INVALID_SYNTAX: 7,
  INVALID_MESSAGE_ID: 9,
  INVALID_SPI: 11,
  NO_PROPOSAL_CHOSEN: 14,
  INVALID_KE_PAYLOAD: 17,
  AUTHENTICATION_FAILED: 24,
  SINGLE_PAIR_REQUIRED: 34,
  NO_ADDITIONAL_SAS: 35,
  INTERNAL_ADDRESS_FAILURE: 36,
  FAILED_CP_REQUIRED: 37,
  TS_UNACCEPTABLE: 38,
  INVALID_SELECTORS: 39,
  TEMPORARY_FAILURE: 43,
  CHILD_SA_NOT_FOUND: 44,
  /** RFC 4555 */
  UNACCEPTABLE_ADDRESSES: 40,
  UNEXPECTED_NAT_DETECTED: 41,
  INITIAL_CONTACT: 16384,
  SET_WINDOW_SIZE: 16385,
  ADDITIONAL_TS_POSSIBLE: 16386,
  IPCOMP_SUPPORTED: 16387,
  NAT_DETECTION_SOURCE_IP: 16388,
  NAT_DETECTION_DESTINATION_IP: 16389,
  COOKIE: 16390,
  USE_TRANSPORT_MODE: 16391,
  HTTP_CERT_LOOKUP_SUPPORTED: 16392,
  REKEY_SA: 16393,
  ESP_TFC_PADDING_NOT_SUPPORTED: 16394,
  NON_FIRST_FRAGMENTS_ALSO: 16395,
  /** RFC 4555 */
  MOBIKE_SUPPORTED: 16396,
  ADDITIONAL_IP4_ADDRESS: 16397,
  ADDITIONAL_IP6_ADDRESS: 16398,
  NO_ADDITIONAL_ADDRESSES: 16399,
  UPDATE_SA_ADDRESSES: 16400,
  COOKIE2: 16401,
  NO_NATS_ALLOWED: 16402,
  /** RFC 7383 */
  IKEV2_FRAGMENTATION_SUPPORTED: 16430,
  /** RFC 7427 */
  SIGNATURE_HASH_ALGORITHMS: 16431,
} as const
/** RFC 7296 3.10.1: types below this are errors. */
export const NOTIFY_ERROR_MAX = 16383

/** RFC 7296 3.13.1, IANA "IKEv2 Traffic Selector Types". */
export const TsType = { TS_IPV4_ADDR_RANGE: 7, TS_IPV6_ADDR_RANGE: 8 } as const

/** RFC 7296 3.14: Pad Length octet after the padding in the SK payload. */
export const PAD_LENGTH_LEN = 1
/** RFC 5282 3.1 / RFC 7634 2: 8-octet explicit IV, 16-octet ICV, 4-octet salt from the keying material. */
export const AEAD_IV_LEN = 8
export const AEAD_ICV_LEN = 16
export const AEAD_SALT_LEN = 4

/** RFC 7296 2.10: nonces are at least 16 octets and at most 256. */
export const NONCE_MIN_LEN = 16
export const NONCE_MAX_LEN = 256
