import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Topic from "../../src/Codec/Topic.ts"
import * as MqttError from "../../src/Errors/MqttError.ts"

const expectReason = (
  error: MqttError.MqttError | undefined,
  tag: MqttError.ReasonTag,
  code: number
): MqttError.MqttErrorReason => {
  assert.isDefined(error, `expected ${tag}, got no error`)
  assert.isTrue(MqttError.isMqttError(error))
  assert.strictEqual(error!.reason._tag, tag, error!.message)
  assert.strictEqual(error!.code, code)
  assert.strictEqual(error!.reason.code, code)
  return error!.reason
}

const expectInvalidTopic = (error: MqttError.MqttError | undefined, kind: "topicName" | "topicFilter") => {
  const reason = expectReason(error, "InvalidTopic", -1)
  assert.strictEqual((reason as MqttError.InvalidTopic).kind, kind)
  return reason as MqttError.InvalidTopic
}

// ---------------------------------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------------------------------

/** One code point of a topic level: no separator, no wildcard, no U+0000; `$` often, to exercise [MQTT-4.7.2-1]. */
const levelUnit = fc.oneof(
  fc.constantFrom("a", "b", "$", " ", "é", "€", "𝄞", "\uFEFF"),
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }).filter((c) => !"+#/\u0000".includes(c))
)
const level = fc.string({ unit: levelUnit, maxLength: 4 })
const levels = fc.array(level, { minLength: 1, maxLength: 6 }).filter((ls) => ls.join("/").length > 0)
const topicName = levels.map((ls) => ls.join("/"))

/** Any sequence of UTF-16 code units, lone surrogates included. */
const codeUnits = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) })
/** Strings of the characters that matter to the topic rules. */
const topicish = fc.string({
  unit: fc.constantFrom("a", "/", "+", "#", "$", "\u0000", "\ud800", "\udc00", "𝄞", "€")
})
const wellFormed = fc.string({ unit: "binary" }).filter((s) => !s.includes("\u0000"))

// ---------------------------------------------------------------------------------------------------------------------
// validateString
// ---------------------------------------------------------------------------------------------------------------------

describe("Topic.validateString", () => {
  it("accepts ordinary strings, the empty string and non-ASCII text", () => {
    for (const value of ["", "client-1", "ü/€/𝄞", " ", "$", "+#", "\u007f\u0080\u07ff\u0800\uffff"]) {
      assert.isUndefined(Topic.validateString("client id", value), JSON.stringify(value))
    }
  })

  it("[MQTT-1.5.3-3] accepts U+FEFF anywhere: it is data, never stripped", () => {
    assert.isUndefined(Topic.validateString("username", "\uFEFF"))
    assert.isUndefined(Topic.validateString("username", "\uFEFFuser\uFEFF"))
    assert.isUndefined(Topic.validateTopicName("\uFEFF/a"))
    assert.isUndefined(Topic.validateTopicFilter("\uFEFF/+"))
  })

  it("[MQTT-1.5.3-1] rejects a lone high surrogate with BadUtf8String (-5)", () => {
    const reason = expectReason(Topic.validateString("client id", "ab\ud800"), "BadUtf8String", -5)
    const bad = reason as MqttError.BadUtf8String
    assert.strictEqual(bad.field, "client id")
    assert.strictEqual(bad.value, "ab\ud800")
    assert.include(bad.detail, "U+D800")
    assert.include(bad.detail, "index 2")
    assert.include(bad.detail, "[MQTT-1.5.3-1]")
    assert.include(bad.message, "client id")
  })

  it("[MQTT-1.5.3-1] rejects a lone low surrogate, a reversed pair and a high surrogate before a non-surrogate", () => {
    for (const value of ["\udc00", "a\udfffb", "\udc00\ud800", "\ud800a", "\udbff\udbff\udc00"]) {
      expectReason(Topic.validateString("username", value), "BadUtf8String", -5)
    }
  })

  it("[MQTT-1.5.3-1] accepts surrogate pairs (code points above U+FFFF)", () => {
    assert.isUndefined(Topic.validateString("username", "\ud800\udc00\udbff\udfff𝄞"))
  })

  it("[MQTT-1.5.3-2] rejects U+0000 with TopicnameTruncated (-7)", () => {
    for (const value of ["\u0000", "a\u0000", "\u0000a", "a/\u0000/b"]) {
      const reason = expectReason(Topic.validateString("will topic", value), "TopicnameTruncated", -7)
      assert.strictEqual((reason as MqttError.TopicnameTruncated).field, "will topic")
      assert.strictEqual((reason as MqttError.TopicnameTruncated).value, value)
    }
  })

  it("[MQTT-1.5.3-1] [MQTT-4.7.3-3] accepts 65535 UTF-8 bytes and rejects 65536 with BadUtf8String (-5)", () => {
    assert.isUndefined(Topic.validateString("username", "a".repeat(65535)))
    assert.isUndefined(Topic.validateString("username", "€".repeat(21845))) // 3 bytes each
    assert.isUndefined(Topic.validateString("username", "𝄞".repeat(16383) + "abc")) // 4 bytes each
    for (const [value, bytes] of [
      ["a".repeat(65536), 65536],
      ["€".repeat(21846), 65538],
      ["𝄞".repeat(16384), 65536],
      ["é".repeat(32768), 65536]
    ] as const) {
      const reason = expectReason(Topic.validateString("username", value), "BadUtf8String", -5)
      assert.include((reason as MqttError.BadUtf8String).detail, `${bytes} bytes`)
      assert.include((reason as MqttError.BadUtf8String).detail, "65535")
    }
  })

  it("property: [MQTT-1.5.3-1] [MQTT-1.5.3-2] well-formed strings of at most 65535 bytes without U+0000 pass", () => {
    fc.assert(
      fc.property(wellFormed, (value) => {
        assert.isAtMost(Buffer.byteLength(value, "utf8"), 65535)
        assert.isUndefined(Topic.validateString("username", value))
      })
    )
  })

  it("property: [MQTT-1.5.3-1] a string holding a lone surrogate is rejected with BadUtf8String", () => {
    const lone = fc.oneof(
      // a high surrogate never followed by a low one: a well-formed suffix cannot start with a low surrogate
      fc.integer({ min: 0xd800, max: 0xdbff }),
      // a low surrogate never preceded by a high one: a well-formed prefix cannot end with a lone high surrogate
      fc.integer({ min: 0xdc00, max: 0xdfff })
    ).map((c) => String.fromCharCode(c))
    fc.assert(
      fc.property(wellFormed, lone, wellFormed, (prefix, surrogate, suffix) => {
        const value = prefix + surrogate + suffix
        expectReason(Topic.validateString("username", value), "BadUtf8String", -5)
        expectReason(Topic.validateTopicName(value), "BadUtf8String", -5)
        expectReason(Topic.validateTopicFilter(value), "BadUtf8String", -5)
      })
    )
  })

  it("property: validateString, validateTopicName and validateTopicFilter never throw on arbitrary strings", () => {
    fc.assert(
      fc.property(fc.oneof(codeUnits, topicish, fc.string()), (value) => {
        for (const error of [
          Topic.validateString("username", value),
          Topic.validateTopicName(value),
          Topic.validateTopicFilter(value)
        ]) {
          assert.isTrue(error === undefined || MqttError.isMqttError(error))
          if (error !== undefined) assert.isString(error.message)
        }
      }),
      { numRuns: 500 }
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// utf8Length
// ---------------------------------------------------------------------------------------------------------------------

describe("Topic.utf8Length", () => {
  it("counts 1, 2, 3 and 4 bytes per code point", () => {
    assert.strictEqual(Topic.utf8Length(""), 0)
    assert.strictEqual(Topic.utf8Length("a"), 1)
    assert.strictEqual(Topic.utf8Length("é"), 2)
    assert.strictEqual(Topic.utf8Length("€"), 3)
    assert.strictEqual(Topic.utf8Length("𝄞"), 4)
    assert.strictEqual(Topic.utf8Length("\ud800"), 3)
  })

  it("property: equals Buffer.byteLength for any sequence of code units", () => {
    fc.assert(
      fc.property(fc.oneof(codeUnits, topicish, fc.string({ unit: "binary" })), (value) => {
        assert.strictEqual(Topic.utf8Length(value), Buffer.byteLength(value, "utf8"))
      })
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// validateTopicName
// ---------------------------------------------------------------------------------------------------------------------

describe("Topic.validateTopicName", () => {
  it("a name found valid is remembered; any other name is still checked, however many were remembered", () => {
    assert.isUndefined(Topic.validateTopicName("a/b"))
    assert.isUndefined(Topic.validateTopicName("a/b"))
    expectInvalidTopic(Topic.validateTopicName("a/+"), "topicName")
    for (let i = 0; i < 300; i++) assert.isUndefined(Topic.validateTopicName(`remembered/${i}`))
    expectInvalidTopic(Topic.validateTopicName("remembered/#"), "topicName")
    expectInvalidTopic(Topic.validateTopicName(""), "topicName")
    expectReason(Topic.validateTopicName("remembered/\u0000"), "TopicnameTruncated", -7)
    assert.isUndefined(Topic.validateTopicName("a/b"))
  })

  const valid = [
    "a",
    "/",
    "//",
    "a/b",
    "/a",
    "a/",
    "a//b",
    "sport/tennis/player1",
    "$SYS/broker/uptime",
    "$",
    " ",
    "a b/c d",
    "ü/€/𝄞",
    "\uFEFF",
    "a".repeat(65535)
  ]
  for (const topic of valid) {
    it(`accepts ${JSON.stringify(topic.length > 20 ? `${topic.slice(0, 20)}… (${topic.length})` : topic)}`, () => {
      assert.isUndefined(Topic.validateTopicName(topic))
    })
  }

  it("[MQTT-4.7.3-1] rejects the empty topic name with InvalidTopic (-1)", () => {
    const reason = expectInvalidTopic(Topic.validateTopicName(""), "topicName")
    assert.strictEqual(reason.topic, "")
    assert.include(reason.detail, "[MQTT-4.7.3-1]")
  })

  const wildcards: ReadonlyArray<readonly [string, string, number]> = [
    ["+", "+", 0],
    ["#", "#", 0],
    ["a/+", "+", 2],
    ["a/#", "#", 2],
    ["+/a", "+", 0],
    ["a+b", "+", 1],
    ["a#b", "#", 1],
    ["sport/tennis/#", "#", 13],
    ["$SYS/+", "+", 5]
  ]
  for (const [topic, wildcard, index] of wildcards) {
    it(`[MQTT-3.3.2-2] [MQTT-4.7.1-1] rejects the wildcard in ${JSON.stringify(topic)} with InvalidTopic (-1)`, () => {
      const reason = expectInvalidTopic(Topic.validateTopicName(topic), "topicName")
      assert.strictEqual(reason.topic, topic)
      assert.include(reason.detail, `"${wildcard}"`)
      assert.include(reason.detail, `index ${index}`)
      assert.include(reason.detail, "[MQTT-4.7.1-1]")
      assert.include(reason.message, `topic name ${JSON.stringify(topic)}`)
    })
  }

  it("[MQTT-4.7.3-2] rejects U+0000 with TopicnameTruncated (-7), naming the field", () => {
    const reason = expectReason(Topic.validateTopicName("a/\u0000"), "TopicnameTruncated", -7)
    assert.strictEqual((reason as MqttError.TopicnameTruncated).field, "topic name")
    const will = expectReason(Topic.validateTopicName("\u0000", "will topic"), "TopicnameTruncated", -7)
    assert.strictEqual((will as MqttError.TopicnameTruncated).field, "will topic")
  })

  it("[MQTT-1.5.3-1] rejects a lone surrogate with BadUtf8String (-5), before any wildcard rule", () => {
    expectReason(Topic.validateTopicName("a/\udc00"), "BadUtf8String", -5)
    expectReason(Topic.validateTopicName("+/\udc00"), "BadUtf8String", -5)
  })

  it("[MQTT-4.7.1-1] reports the first wildcard of a topic name", () => {
    assert.include(expectInvalidTopic(Topic.validateTopicName("a/#/+"), "topicName").detail, `"#" at index 2`)
    assert.include(expectInvalidTopic(Topic.validateTopicName("a/+/#"), "topicName").detail, `"+" at index 2`)
  })

  it("[MQTT-4.7.3-3] rejects a topic name over 65535 bytes with BadUtf8String (-5)", () => {
    const reason = expectReason(Topic.validateTopicName("€".repeat(21846)), "BadUtf8String", -5)
    assert.strictEqual((reason as MqttError.BadUtf8String).field, "topic name")
  })

  it("property: generated topic names are valid", () => {
    fc.assert(fc.property(topicName, (topic) => assert.isUndefined(Topic.validateTopicName(topic))))
  })

  it("property: [MQTT-4.7.1-1] a topic name holding + or # is rejected with InvalidTopic", () => {
    fc.assert(
      fc.property(topicName, fc.constantFrom("+", "#"), fc.nat(), (topic, wildcard, at) => {
        // insert between code points, never inside a surrogate pair
        const points = Array.from(topic)
        points.splice(at % (points.length + 1), 0, wildcard)
        expectInvalidTopic(Topic.validateTopicName(points.join("")), "topicName")
      })
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// validateTopicFilter
// ---------------------------------------------------------------------------------------------------------------------

describe("Topic.validateTopicFilter", () => {
  const valid = [
    "#",
    "a/#",
    "/#",
    "//#",
    "a/b/#",
    "+",
    "+/a",
    "a/+/b",
    "/+",
    "+/",
    "+/+",
    "+//+",
    "+/#",
    "+/+/#",
    "sport/tennis/+",
    "$SYS/#",
    "$SYS/+/x",
    "a",
    "/",
    "a//b",
    "ü/+/€",
    "\uFEFF/#"
  ]
  for (const filter of valid) {
    it(`accepts ${JSON.stringify(filter)}`, () => {
      assert.isUndefined(Topic.validateTopicFilter(filter))
    })
  }

  it("[MQTT-4.7.3-1] rejects the empty topic filter with InvalidTopic (-1)", () => {
    const reason = expectInvalidTopic(Topic.validateTopicFilter(""), "topicFilter")
    assert.include(reason.detail, "[MQTT-4.7.3-1]")
  })

  const badHash: ReadonlyArray<readonly [string, number]> = [
    ["a#", 1],
    ["a/#/b", 2],
    ["#/", 0],
    ["#/a", 0],
    ["##", 0],
    ["a/b#", 3],
    ["sport/tennis#", 12],
    ["/#/", 1],
    ["#+", 0]
  ]
  for (const [filter, index] of badHash) {
    it(`[MQTT-4.7.1-2] rejects the misplaced "#" in ${JSON.stringify(filter)} with InvalidTopic (-1)`, () => {
      const reason = expectInvalidTopic(Topic.validateTopicFilter(filter), "topicFilter")
      assert.strictEqual(reason.topic, filter)
      assert.include(reason.detail, `"#" at index ${index}`)
      assert.include(reason.detail, "[MQTT-4.7.1-2]")
      assert.include(reason.message, `topic filter ${JSON.stringify(filter)}`)
    })
  }

  const badPlus: ReadonlyArray<readonly [string, number]> = [
    ["a+", 1],
    ["+a", 0],
    ["a/b+", 3],
    ["++", 0],
    ["+#", 0],
    ["a/+b/c", 2],
    ["sport+", 5],
    ["a/++", 2]
  ]
  for (const [filter, index] of badPlus) {
    it(`[MQTT-4.7.1-3] rejects the "+" that does not fill its level in ${JSON.stringify(filter)}`, () => {
      const reason = expectInvalidTopic(Topic.validateTopicFilter(filter), "topicFilter")
      assert.strictEqual(reason.topic, filter)
      assert.include(reason.detail, `"+" at index ${index}`)
      assert.include(reason.detail, "[MQTT-4.7.1-3]")
    })
  }

  it("[MQTT-4.7.3-2] rejects U+0000 with TopicnameTruncated (-7)", () => {
    const reason = expectReason(Topic.validateTopicFilter("a/+/\u0000"), "TopicnameTruncated", -7)
    assert.strictEqual((reason as MqttError.TopicnameTruncated).field, "topic filter")
  })

  it("[MQTT-1.5.3-1] rejects a lone surrogate with BadUtf8String (-5), before any wildcard rule", () => {
    expectReason(Topic.validateTopicFilter("a/\ud800/#"), "BadUtf8String", -5)
    expectReason(Topic.validateTopicFilter("#\ud800"), "BadUtf8String", -5)
    expectReason(Topic.validateTopicFilter("a+/\u0000"), "TopicnameTruncated", -7)
  })

  it("[MQTT-4.7.1-2] [MQTT-4.7.1-3] reports the first misplaced wildcard", () => {
    assert.include(expectInvalidTopic(Topic.validateTopicFilter("a+/#/b"), "topicFilter").detail, `"+" at index 1`)
    assert.include(expectInvalidTopic(Topic.validateTopicFilter("+/#/b+"), "topicFilter").detail, `"#" at index 2`)
    assert.include(expectInvalidTopic(Topic.validateTopicFilter("+/+/a+"), "topicFilter").detail, `"+" at index 5`)
  })

  it("[MQTT-4.7.3-3] rejects a topic filter over 65535 bytes with BadUtf8String (-5)", () => {
    assert.isUndefined(Topic.validateTopicFilter(`${"a".repeat(65533)}/#`))
    expectReason(Topic.validateTopicFilter(`${"a".repeat(65534)}/#`), "BadUtf8String", -5)
  })

  it("property: every valid topic name is a valid topic filter", () => {
    fc.assert(fc.property(topicName, (topic) => assert.isUndefined(Topic.validateTopicFilter(topic))))
  })

  it("property: [MQTT-4.7.1-2] [MQTT-4.7.1-3] levels replaced by whole-level wildcards stay valid", () => {
    fc.assert(
      fc.property(levels, fc.array(fc.boolean()), fc.boolean(), (ls, plus, hash) => {
        const filter = [...ls.map((l, i) => (plus[i] ? "+" : l)), ...(hash ? ["#"] : [])].join("/")
        assert.isUndefined(Topic.validateTopicFilter(filter))
      })
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// matches
// ---------------------------------------------------------------------------------------------------------------------

describe("Topic.matches", () => {
  const table: ReadonlyArray<readonly [string, string, boolean]> = [
    // literal levels
    ["a/b", "a/b", true],
    ["a/b", "a/c", false],
    ["a/b", "a", false],
    ["a", "a/b", false],
    ["a/b", "a/b/", false],
    ["a/b", "a/bc", false],
    ["a/bc", "a/b", false],
    ["ACCOUNTS", "Accounts", false],
    ["€/𝄞", "€/𝄞", true],
    // "/" alone and empty levels
    ["/", "/", true],
    ["/", "a", false],
    ["/", "//", false],
    ["a//b", "a//b", true],
    ["a//b", "a/b", false],
    ["a/b", "a//b", false],
    ["/a", "/a", true],
    ["/a", "a", false],
    ["a/", "a/", true],
    ["a/", "a", false],
    // "#" matches the parent and any number of children
    ["#", "a", true],
    ["#", "/", true],
    ["#", "a/b/c", true],
    ["#", "//", true],
    ["a/#", "a", true],
    ["a/#", "a/", true],
    ["a/#", "a/b", true],
    ["a/#", "a/b/c", true],
    ["a/#", "a//", true],
    ["a/#", "ab", false],
    ["a/#", "b/a", false],
    ["a/#", "/a", false],
    ["a/b/#", "a/b", true],
    ["a/b/#", "a", false],
    ["a/b/#", "a/c/d", false],
    ["/#", "/", true],
    ["/#", "/a/b", true],
    ["/#", "a", false],
    ["sport/#", "sport", true],
    ["sport/tennis/player1/#", "sport/tennis/player1/ranking", true],
    // "+" matches exactly one level, possibly empty
    ["+", "a", true],
    ["+", "/", false],
    ["+", "a/b", false],
    ["a/+", "a/b", true],
    ["a/+", "a/", true],
    ["a/+", "a", false],
    ["a/+", "a/b/c", false],
    ["+/b", "a/b", true],
    ["+/b", "/b", true],
    ["+/b", "b", false],
    ["/+", "/", true],
    ["/+", "/a", true],
    ["/+", "a", false],
    ["/+", "a/b", false],
    ["+/", "a/", true],
    ["+/", "a", false],
    ["+/+", "/", true],
    ["+/+", "a/b", true],
    ["+/+", "a", false],
    ["+/+", "a/b/c", false],
    ["a/+/b", "a//b", true],
    ["a/+/b", "a/x/b", true],
    ["a/+/b", "a/x/c", false],
    ["+/+/+", "a//b", true],
    ["+/#", "a", true],
    ["+/#", "a/b/c", true],
    ["+/#", "/", true],
    ["sport/+", "sport", false],
    ["sport/+", "sport/", true],
    ["sport/tennis/+", "sport/tennis/player1", true],
    ["sport/tennis/+", "sport/tennis/player1/ranking", false],
    // [MQTT-4.7.2-1] topic names starting with "$"
    ["#", "$SYS", false],
    ["#", "$SYS/x", false],
    ["#", "$", false],
    ["+", "$SYS", false],
    ["+/x", "$SYS/x", false],
    ["+/#", "$SYS/x", false],
    ["+/+", "$SYS/x", false],
    ["$SYS/#", "$SYS/x", true],
    ["$SYS/#", "$SYS", true],
    ["$SYS/#", "$SYS/broker/uptime", true],
    ["$SYS/+", "$SYS/x", true],
    ["$SYS/+/y", "$SYS/x/y", true],
    ["$SYS", "$SYS", true],
    ["$SYS/#", "SYS/x", false],
    ["#", "a/$SYS", true],
    ["a/+", "a/$x", true],
    ["+/monitor/Clients", "$SYS/monitor/Clients", false],
    ["$SYS/monitor/+", "$SYS/monitor/Clients", true]
  ]
  for (const [filter, name, expected] of table) {
    const spec = name.startsWith("$") ? "[MQTT-4.7.2-1] " : ""
    it(`${spec}${JSON.stringify(filter)} ${expected ? "matches" : "does not match"} ${JSON.stringify(name)}`, () => {
      assert.isUndefined(Topic.validateTopicFilter(filter))
      assert.isUndefined(Topic.validateTopicName(name))
      assert.strictEqual(Topic.matches(filter, name), expected)
    })
  }

  it("property: a valid topic name used as a filter matches itself", () => {
    fc.assert(fc.property(topicName, (topic) => assert.isTrue(Topic.matches(topic, topic))))
  })

  it("property: [MQTT-4.7.2-1] # matches every topic name not starting with $", () => {
    fc.assert(
      fc.property(topicName, (topic) => assert.strictEqual(Topic.matches("#", topic), !topic.startsWith("$")))
    )
  })

  it("property: [MQTT-4.7.2-1] replacing any single level of a topic with + still matches (except a leading $)", () => {
    fc.assert(
      fc.property(levels, fc.nat(), (ls, at) => {
        const i = at % ls.length
        const topic = ls.join("/")
        const filter = ls.map((l, j) => (j === i ? "+" : l)).join("/")
        const expected = !(i === 0 && topic.startsWith("$"))
        assert.strictEqual(Topic.matches(filter, topic), expected, `${filter} vs ${topic}`)
      })
    )
  })

  it("property: the parent level and its children match a filter ending in /#", () => {
    fc.assert(
      fc.property(levels, levels, fc.boolean(), (parent, children, withChildren) => {
        const filter = `${parent.join("/")}/#`
        const topic = withChildren ? `${parent.join("/")}/${children.join("/")}` : parent.join("/")
        assert.isTrue(Topic.matches(filter, topic), `${filter} vs ${topic}`)
      })
    )
  })

  it("property: a filter of + levels never matches a topic name with a different number of levels", () => {
    fc.assert(
      fc.property(levels, fc.integer({ min: 1, max: 8 }), (ls, count) => {
        fc.pre(count !== ls.length)
        const filter = Array.from({ length: count }, () => "+").join("/")
        assert.isFalse(Topic.matches(filter, ls.join("/")))
      })
    )
  })

  it("property: a filter of + levels matches every topic name with as many levels not starting with $", () => {
    fc.assert(
      fc.property(levels, (ls) => {
        const topic = ls.join("/")
        const filter = ls.map(() => "+").join("/")
        assert.strictEqual(Topic.matches(filter, topic), !topic.startsWith("$"))
      })
    )
  })

  it("property: agrees with a reference implementation built on split", () => {
    const reference = (filter: string, topic: string): boolean => {
      if (topic.startsWith("$") && (filter.startsWith("+") || filter.startsWith("#"))) return false
      const f = filter.split("/")
      const t = topic.split("/")
      for (let i = 0; i < f.length; i++) {
        if (f[i] === "#") return true
        if (i >= t.length) return false
        if (f[i] !== "+" && f[i] !== t[i]) return false
      }
      return f.length === t.length
    }
    const filterLevel = fc.oneof(level, fc.constant("+"), fc.constantFrom("a", "b", "$", ""))
    const filter = fc
      .tuple(fc.array(filterLevel, { minLength: 1, maxLength: 5 }), fc.boolean())
      .map(([ls, hash]) => (hash ? [...ls, "#"] : ls).join("/"))
      .filter((f) => f.length > 0)
    const smallLevel = fc.constantFrom("a", "b", "$", "", "$a", "€")
    const topic = fc
      .array(smallLevel, { minLength: 1, maxLength: 5 })
      .map((ls) => ls.join("/"))
      .filter((t) => t.length > 0)
    fc.assert(
      fc.property(filter, topic, (f, t) => {
        assert.isUndefined(Topic.validateTopicFilter(f))
        assert.strictEqual(Topic.matches(f, t), reference(f, t), `${f} vs ${t}`)
      }),
      { numRuns: 2000 }
    )
  })

  it("never throws on arbitrary strings", () => {
    fc.assert(
      fc.property(topicish, topicish, (f, t) => {
        assert.isBoolean(Topic.matches(f, t))
      })
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// isWildcardFilter
// ---------------------------------------------------------------------------------------------------------------------

describe("Topic.isWildcardFilter", () => {
  it("is true exactly when the filter holds + or #", () => {
    for (const filter of ["#", "+", "a/#", "a/+/b", "+/+"]) assert.isTrue(Topic.isWildcardFilter(filter), filter)
    for (const filter of ["a", "/", "a/b", "$SYS/x", ""]) assert.isFalse(Topic.isWildcardFilter(filter), filter)
  })
})
