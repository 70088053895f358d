// The Jinja2 subset construct by construct, each expected string written out
// by hand from Jinja2's rules (trim_blocks and lstrip_blocks on, as
// transformers renders chat templates) and Python's semantics.
#include "runtime/jinja.h"

#include <gtest/gtest.h>

#include <random>

namespace lmpress::jinja {
namespace {

std::string R(const std::string& src, const std::string& ctx = "{}", const RenderOptions& opt = {}) {
  return Template(src).render(Json::parse(ctx), opt);
}

// The error a template gives (parse or render), as the kind and the message.
TemplateError E(const std::string& src, const std::string& ctx = "{}", const RenderOptions& opt = {}) {
  try {
    R(src, ctx, opt);
  } catch (const TemplateError& e) {
    return e;
  }
  ADD_FAILURE() << "no error from: " << src;
  return TemplateError(TemplateError::Kind::Render, "", 0);
}

void expect_error(const std::string& src, TemplateError::Kind kind, const std::string& msg, int line = -1,
                  const std::string& ctx = "{}") {
  const TemplateError e = E(src, ctx);
  const std::string shown = src.size() > 200 ? src.substr(0, 200) + "..." : src;
  EXPECT_EQ(int(e.kind), int(kind)) << shown << " -> " << e.what();
  EXPECT_NE(std::string(e.what()).find(msg), std::string::npos) << shown << " -> " << e.what();
  if (line >= 0) {
    EXPECT_EQ(e.line, line) << shown << " -> " << e.what();
  }
}

using K = TemplateError::Kind;

TEST(Jinja, TextAndTrailingNewline) {
  EXPECT_EQ(R("plain text"), "plain text");
  EXPECT_EQ(R("a\n"), "a");          // keep_trailing_newline=False drops one...
  EXPECT_EQ(R("a\n\n"), "a\n");      // ...only one
  EXPECT_EQ(R("a\r\nb\rc"), "a\nb\nc");  // every newline sequence becomes \n
  EXPECT_EQ(R(""), "");
}

TEST(Jinja, TrimBlocksAndLstripBlocks) {
  // trim_blocks: the newline after a block tag goes; lstrip_blocks: the
  // indentation before it goes. Not for {{ }}.
  EXPECT_EQ(R("{% if true %}\n  line\n{% endif %}\nend"), "  line\nend");
  EXPECT_EQ(R("  {% if true %}x{% endif %}\n"), "x");
  EXPECT_EQ(R("  {{ 'v' }}\n"), "  v");
  EXPECT_EQ(R("{% for i in [1, 2] %}\n    {{ i }}\n{% endfor %}\n"), "    1\n    2\n");
  EXPECT_EQ(R("a {% if true %}b{% endif %}"), "a b");  // text before the tag on its line stays
  // Comments trim like blocks.
  EXPECT_EQ(R("x\n  {# note #}\ny"), "x\ny");
  // `+` turns both off for its tag.
  EXPECT_EQ(R("  {%+ if true %}k{% endif +%}\nn"), "  k\nn");
}

TEST(Jinja, WhitespaceControl) {
  EXPECT_EQ(R("a   {%- if true -%}   b   {%- endif -%}   c"), "abc");
  EXPECT_EQ(R("a \n {{- 'b' -}} \n c"), "abc");
  EXPECT_EQ(R("x {#- c -#} y"), "xy");
  EXPECT_EQ(R("{%- macro m(x) -%}\n    [{{ x }}]\n{%- endmacro -%}\n{{ m(1) }}\n{{- m(2) }}\n"), "[1][2]");
}

TEST(Jinja, Raw) {
  EXPECT_EQ(R("{% raw %}{{ not rendered }} {% if %}{% endraw %}!"), "{{ not rendered }} {% if %}!");
  EXPECT_EQ(R("{%- raw -%}  x  {%- endraw -%}|"), "x|");
}

TEST(Jinja, Literals) {
  EXPECT_EQ(R("{{ 'it\\'s' }}|{{ \"a\\\"b\" }}|{{ 'a' 'b' \"c\" }}"), "it's|a\"b|abc");
  EXPECT_EQ(R("{{ '\\x41\\u00e9\\101\\q' }}"), "A\xc3\xa9" "A\\q");
  EXPECT_EQ(R("{{ 1_000 }}|{{ 0x1F }}|{{ 0b101 }}|{{ 0o17 }}|{{ 1e3 }}|{{ 2.5 }}"), "1000|31|5|15|1000.0|2.5");
  EXPECT_EQ(R("{{ true }}|{{ False }}|{{ none }}|{{ None }}"), "True|False|None|None");
  EXPECT_EQ(R("{{ [1, 'a', none, true, 1.5, {'k': [2]}] }}"), "[1, 'a', None, True, 1.5, {'k': [2]}]");
  EXPECT_EQ(R("{{ ('a',) }}|{{ () }}|{{ (1, 'b') }}|{{ {1: 'x', none: 2.0} }}"), "('a',)|()|(1, 'b')|{1: 'x', None: 2.0}");
  // Python's repr picks the quote and escapes.
  EXPECT_EQ(R("{{ [\"it's\", 'a\"b', 'c\\\\d', '\\n\\t'] }}"), "[\"it's\", 'a\"b', 'c\\\\d', '\\n\\t']");
}

TEST(Jinja, Arithmetic) {
  EXPECT_EQ(R("{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 2 ** 3 ** 2 }}|{{ 10 - 2 - 3 }}"), "7|9|64|5");
  // Python's division: / is always float, // and % floor toward -inf.
  EXPECT_EQ(R("{{ 7 / 2 }}|{{ 4 / 2 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 % -3 }}"), "3.5|2.0|3|-4|2|-2");
  EXPECT_EQ(R("{{ -7.5 // 2 }}|{{ 7.5 % -2 }}|{{ 2 ** -1 }}"), "-4.0|-0.5|0.5");
  // Float repr: shortest round trip, exponent outside 1e-4 <= |x| < 1e16.
  EXPECT_EQ(R("{{ 0.1 + 0.2 }}|{{ 1e16 }}|{{ 1e15 }}|{{ 0.0001 }}|{{ 0.00001 }}|{{ 1 / 3 }}"),
            "0.30000000000000004|1e+16|1000000000000000.0|0.0001|1e-05|0.3333333333333333");
  EXPECT_EQ(R("{{ 'ab' * 3 }}|{{ [1] * 2 }}|{{ [1] + [2] }}|{{ 'a' + 'b' }}|{{ true + 1 }}|{{ -3 }}|{{ +3 }}"),
            "ababab|[1, 1]|[1, 2]|ab|2|-3|3");
  // Filters bind tighter than unary minus: -(3 | abs)... and -3 | abs is abs(-3).
  EXPECT_EQ(R("{{ -3 | abs }}|{{ 1 + -2 | abs }}"), "3|3");
}

TEST(Jinja, ComparisonsAndLogic) {
  EXPECT_EQ(R("{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 1 == 1.0 }}|{{ true == 1 }}|{{ 'a' != 'b' }}|{{ [1, 2] < [1, 3] }}"),
            "True|False|True|True|True|True");
  EXPECT_EQ(R("{{ 'b' in 'abc' }}|{{ 2 in [1, 2] }}|{{ 'k' in {'k': 1} }}|{{ 3 not in [1, 2] }}|{{ 'x' in y }}"),
            "True|True|True|True|False");
  // and/or give an operand, as in Python.
  EXPECT_EQ(R("{{ none or 'd' }}|{{ 0 and 'x' }}|{{ '' or [] }}|{{ 'a' and 'b' }}|{{ not none }}|{{ not 1 == 2 }}"),
            "d|0|[]|b|True|True");
  EXPECT_EQ(R("{{ 'y' if 1 else 'n' }}|{{ 'y' if 0 }}|{{ 1 if false else 2 if false else 3 }}"), "y||3");
  // Falsy: '', 0, 0.0, [], {}, none, undefined.
  EXPECT_EQ(R("{% for v in ['', 0, 0.0, [], {}, none, 'x', [0]] %}{{ 'T' if v else 'F' }}{% endfor %}{{ 'T' if u else 'F' }}"),
            "FFFFFFTTF");
}

TEST(Jinja, AccessAndUndefined) {
  const std::string ctx = R"({"d": {"a": 1, "b": {"c": 2}, "items": "key"}, "l": [1, 2, 3], "s": "héllo"})";
  EXPECT_EQ(R("{{ d.a }}|{{ d['b']['c'] }}|{{ d.b.c }}|{{ l[0] }}|{{ l.1 }}|{{ l[-1] }}", ctx), "1|2|2|1|2|3");
  // Missing keys and indices are Undefined: printed as nothing, not defined.
  EXPECT_EQ(R("[{{ d.zz }}]|{{ d.zz is defined }}|[{{ l[10] }}]|{{ nope is defined }}|[{{ nope }}]", ctx),
            "[]|False|[]|False|[]");
  // d.items is the method, d['items'] the key (Jinja2's getattr/getitem order).
  EXPECT_EQ(R("{{ d['items'] }}|{{ d.items() | list | length }}", ctx), "key|3");
  // Strings index by code point.
  EXPECT_EQ(R("{{ s[1] }}|{{ s | length }}|{{ s[1:3] }}|{{ s[::-1] }}", ctx), "é|5|él|olléh");
  EXPECT_EQ(R("{{ l[1:] }}|{{ l[:-1] }}|{{ l[::2] }}|{{ l[5:] }}|{{ l[-10:1] }}", ctx), "[2, 3]|[1, 2]|[1, 3]|[]|[1]");
  EXPECT_EQ(R("{{ none.x }}|{{ (none.x) is defined }}"), "|False");
  expect_error("{{ nope.x }}", K::Render, "'nope' is undefined", 1);
  expect_error("{{ d.zz.y }}", K::Render, "'dict object' has no attribute 'zz'", 1, ctx);
  expect_error("{{ nope + 1 }}", K::Render, "'nope' is undefined");
}

TEST(Jinja, IfElifElse) {
  const char* t = "{% if x > 9 %}big{% elif x > 3 %}mid{% else %}small{% endif %}";
  EXPECT_EQ(R(t, R"({"x": 10})"), "big");
  EXPECT_EQ(R(t, R"({"x": 5})"), "mid");
  EXPECT_EQ(R(t, R"({"x": 1})"), "small");
}

TEST(Jinja, ForLoops) {
  EXPECT_EQ(R("{% for i in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
              "{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
            "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;");
  // The `if` filter runs before the loop counts.
  EXPECT_EQ(R("{% for i in [3, 1, 2] if i > 1 %}{{ i }}:{{ loop.index }}/{{ loop.length }} {% endfor %}"), "3:1/2 2:2/2 ");
  EXPECT_EQ(R("{% for i in [] %}x{% else %}empty{% endfor %}|{% for i in [1] if false %}x{% else %}none{% endfor %}"),
            "empty|none");
  EXPECT_EQ(R("{% for a, b in [[1, 2], [3, 4]] %}{{ a }}-{{ b }},{% endfor %}"), "1-2,3-4,");
  EXPECT_EQ(R("{% for k, v in {'z': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "z=1;a=2;");
  EXPECT_EQ(R("{% for k in {'z': 1, 'a': 2} %}{{ k }}{% endfor %}"), "za");
  EXPECT_EQ(R("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}"
              "{% endfor %}"),
            "0134");
  EXPECT_EQ(R("{% for row in [[1, 2], [3]] %}{% for x in row %}{{ loop.index }}{{ x }}{% endfor %}({{ loop.index }}){% endfor %}"),
            "1122(1)13(2)");
  EXPECT_EQ(R("{% for x in [1, 2, 3] %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }} {% endfor %}"), "<1>2 1<2>3 2<3> ");
  EXPECT_EQ(R("{% for x in [1, 2, 3] %}{{ loop.cycle('o', 'e') }}{% endfor %}"), "oeo");
  EXPECT_EQ(R("{% for x in [1, 1, 2] %}{% if loop.changed(x) %}{{ x }}{% endif %}{% endfor %}"), "12");
  EXPECT_EQ(R("{% for x in u %}x{% endfor %}done"), "done");  // undefined iterates as empty
  expect_error("{% for x in 5 %}{% endfor %}", K::Render, "'int' object is not iterable", 1);
  expect_error("{% for x in none %}{% endfor %}", K::Render, "'NoneType' object is not iterable");
}

TEST(Jinja, Scoping) {
  // A set in a loop body lasts one iteration; an if block has no scope.
  EXPECT_EQ(R("{% set c = 0 %}{% for i in range(3) %}{% set c = c + 1 %}{{ c }}{% endfor %}{{ c }}"), "1110");
  EXPECT_EQ(R("{% if true %}{% set z = 3 %}{% endif %}{{ z }}"), "3");
  EXPECT_EQ(R("{% set x = 1 %}{% for i in [1] %}{{ x }}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}"), "121");
  // namespace() carries values out of loops.
  EXPECT_EQ(R("{% set ns = namespace(n=0, l=[]) %}{% for m in ['a', 'b'] %}{% set ns.n = ns.n + 1 %}"
              "{% set ns.l = ns.l + [m | upper] %}{% endfor %}{{ ns.n }}{{ ns.l }}"),
            "2['A', 'B']");
  EXPECT_EQ(R("{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns.c is defined }}"), "12False");
  // A macro sees the template's variables as they are when it is called, not the caller's loop variables.
  EXPECT_EQ(R("{% set x = 1 %}{% macro show() %}{{ x }}{{ i }}{% endmacro %}{% set x = 2 %}{{ show() }}"
              "{% for i in [7] %}{% set x = 3 %}{{ show() }}{% endfor %}"),
            "22");
  expect_error("{% set x = 1 %}{% set x.y = 2 %}", K::Render, "can't assign attribute on non-namespace object");
}

TEST(Jinja, Set) {
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set c = 1, %}{{ c }}"), "12|(1,)");
  EXPECT_EQ(R("{% set s %}  body {{ 1 + 1 }}  {% endset %}[{{ s }}]"), "[  body 2  ]");
  EXPECT_EQ(R("{% set t | trim | upper %}  hi there  {% endset %}[{{ t }}]"), "[HI THERE]");
  EXPECT_EQ(R("{% set ns = namespace(x=1) %}{% set ns.x | upper %}hi{% endset %}{{ ns.x }}"), "HI");
  expect_error("{% set a, b = [1] %}", K::Render, "cannot unpack 1 values into 2 names");
}

TEST(Jinja, Macros) {
  const std::string m = "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}";
  EXPECT_EQ(R(m + "{{ greet('A') }} {{ greet('B', 'Hi') }} {{ greet(greeting='Yo', name='C') }}"),
            "Hello, A! Hi, B! Yo, C!");
  EXPECT_EQ(R(m + "[{{ greet() }}]"), "[Hello, !]");  // a missing argument is Undefined
  EXPECT_EQ(R("{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) }}"), "54321");
  // Extra arguments only when the body reads varargs / kwargs.
  EXPECT_EQ(R("{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }}"), "1(2,){'k': 3}");
  expect_error("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", K::Render, "macro 'm' takes not more than 1 argument(s)");
  expect_error("{% macro m(a) %}{% endmacro %}{{ m(b=2) }}", K::Render, "macro 'm' takes no keyword argument 'b'");
  expect_error("{% macro m(a) %}{% endmacro %}{{ m(1, a=2) }}", K::Render, "got multiple values for argument 'a'");
}

TEST(Jinja, FilterAndGenerationBlocks) {
  EXPECT_EQ(R("{% filter upper %}shout {{ 'this' }}{% endfilter %}"), "SHOUT THIS");
  EXPECT_EQ(R("{% filter replace('a', 'o') | trim %}  banana  {% endfilter %}"), "bonono");
  EXPECT_EQ(R("{% generation %}gen {{ 1 }}{% endgeneration %}"), "gen 1");
}

TEST(Jinja, StringFilters) {
  EXPECT_EQ(R("{{ '  x  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'Hello' | lower }}|{{ 'hello' | upper }}"), "x|hi|hello|HELLO");
  EXPECT_EQ(R("{{ 'hello WORLD' | capitalize }}|{{ \"o'neil-smith (x) a\" | title }}"), "Hello world|O'neil-Smith (X) A");
  EXPECT_EQ(R("{{ 'a-b-c' | replace('-', '+') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'hello' | reverse }}"),
            "a+b+c|bba|olleh");
  EXPECT_EQ(R("{{ 'x' | center(7) }}|{{ 'one two  three' | wordcount }}|{{ 'straße' | upper }}|{{ 'ÜNÏ' | lower }}"),
            "   x   |3|STRASSE|ünï");
  EXPECT_EQ(R("{{ 'a\nb\n\nc' | indent }}|{{ 'a\nb' | indent(2, true) }}|{{ 'a\n\nb' | indent(width='>', blank=true) }}"),
            "a\n    b\n\n    c|  a\n  b|a\n>\n>b");
  EXPECT_EQ(R("{{ 5 | string + 'x' }}|{{ none | string }}|{{ [1] | string }}"), "5x|None|[1]");
}

TEST(Jinja, SequenceFilters) {
  EXPECT_EQ(R("{{ [1, 2, 3] | join(', ') }}|{{ ['a', 'b'] | join }}|{{ [{'n': 'x'}, {'n': 'y'}] | join('-', attribute='n') }}"),
            "1, 2, 3|ab|x-y");
  EXPECT_EQ(R("{{ [1, 2] | first }}|{{ [1, 2] | last }}|[{{ [] | first }}]|{{ 'abc' | list }}|{{ {'a': 1} | list }}"),
            "1|2|[]|['a', 'b', 'c']|['a']");
  EXPECT_EQ(R("{{ [1, 2] | length }}|{{ {'a': 1} | length }}|{{ 'abc' | count }}|{{ u | length }}"), "2|1|3|0");
  EXPECT_EQ(R("{{ [3, 1, 2] | sort }}|{{ ['b', 'A', 'c'] | sort }}|{{ ['b', 'A', 'c'] | sort(case_sensitive=true) }}"
              "|{{ [3, 1, 2] | sort(reverse=true) }}|{{ [{'a': 2}, {'a': 1}] | sort(attribute='a') }}"),
            "[1, 2, 3]|['A', 'b', 'c']|['A', 'b', 'c']|[3, 2, 1]|[{'a': 1}, {'a': 2}]");
  EXPECT_EQ(R("{{ [1, 2, 2, 1] | unique | list }}|{{ ['a', 'A', 'b'] | unique | list }}|{{ [3, 1, 2] | min }}"
              "|{{ [3, 1, 2] | max }}|{{ [1, 2, 3] | sum }}|{{ [{'v': 1}, {'v': 2}] | sum(attribute='v') }}"),
            "[1, 2]|['a', 'b']|1|3|6|3");
  EXPECT_EQ(R("{{ ['a', 'b'] | map('upper') | list }}|{{ [{'n': 1}, {}] | map(attribute='n') | list }}"
              "|{{ [{'n': 1}, {}] | map(attribute='n', default=0) | list }}"),
            "['A', 'B']|[1, Undefined]|[1, 0]");
  EXPECT_EQ(R("{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3, 4] | reject('even') | list }}"
              "|{{ [1, none, 0, 'a'] | select | list }}"),
            "[1, 3]|[1, 3]|[1, 'a']");
  EXPECT_EQ(R("{{ [{'t': 'a'}, {'t': 'b'}] | selectattr('t', 'equalto', 'a') | list }}"
              "|{{ [{'t': 'a'}, {'u': 1}] | selectattr('t', 'defined') | list }}"
              "|{{ [{'t': 'a'}, {'t': 'b'}] | rejectattr('t', '==', 'a') | list }}"),
            "[{'t': 'a'}]|[{'t': 'a'}]|[{'t': 'b'}]");
  EXPECT_EQ(R("{{ [1, 2, 3] | batch(2) | list }}|{{ [1, 2, 3] | batch(2, 0) | list }}|{{ [1, 2] | reverse | list }}"),
            "[[1, 2], [3]]|[[1, 2], [3, 0]]|[2, 1]");
  // map, select and items give generators: always true, no length.
  EXPECT_EQ(R("{{ 'T' if [] | select else 'F' }}"), "T");
  expect_error("{{ [1] | select | length }}", K::Render, "object of type 'generator' has no len()");
}

TEST(Jinja, DictFiltersAndMethods) {
  EXPECT_EQ(R("{{ {'b': 1, 'A': 2, 'c': 3} | dictsort }}|{{ {'b': 1, 'a': 2} | dictsort(by='value') }}"
              "|{{ {'b': 1, 'a': 2} | dictsort(reverse=true) }}|{{ {'b': 1, 'a': 2} | items | list }}"),
            "[('A', 2), ('b', 1), ('c', 3)]|[('b', 1), ('a', 2)]|[('b', 1), ('a', 2)]|[('b', 1), ('a', 2)]");
  EXPECT_EQ(R("{% set d = {'a': 1} %}{{ d.get('a') }}|{{ d.get('z') }}|{{ d.get('z', 'dz') }}|{{ d.keys() | list }}"
              "|{{ d.values() | list }}|{{ d.items() | list }}|{{ {1: 'one'}[1] }}|{{ {true: 'x'}[1] }}"),
            "1|None|dz|['a']|[1]|[('a', 1)]|one|x");
  EXPECT_EQ(R("{{ x | default('dflt') }}|{{ none | default('dflt') }}|{{ '' | default('dflt', true) }}"
              "|{{ 0 | d('zero', boolean=true) }}|{{ false | default('f') }}"),
            "dflt|None|dflt|zero|False");
  EXPECT_EQ(R("{{ dict(a=1, b=2) }}|{{ range(3) | list }}|{{ range(1, 10, 3) | list }}|{{ range(5, 0, -2) | list }}"),
            "{'a': 1, 'b': 2}|[0, 1, 2]|[1, 4, 7]|[5, 3, 1]");
}

TEST(Jinja, NumberFilters) {
  EXPECT_EQ(R("{{ -3 | abs }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 3.5 | round }}|{{ 2.1 | round(0, 'ceil') }}"),
            "3|2.57|2.0|4.0|3.0");
  EXPECT_EQ(R("{{ '42' | int }}|{{ '4.7' | int }}|{{ 'x' | int }}|{{ 'x' | int(7) }}|{{ '0x1A' | int(0, 16) }}"
              "|{{ true | int }}|{{ '3.5' | float }}|{{ 3 | float }}"),
            "42|4|0|7|26|1|3.5|3.0");
}

TEST(Jinja, ToJson) {
  // transformers' tojson: json.dumps, no HTML escaping, ensure_ascii off.
  EXPECT_EQ(R("{{ {'a': 1, 'b': [1, 2.5, none, true, 'x\"y<&>']} | tojson }}"),
            R"({"a": 1, "b": [1, 2.5, null, true, "x\"y<&>"]})");
  EXPECT_EQ(R("{{ {'a': {'b': []}, 'c': {}} | tojson(indent=2) }}"), "{\n  \"a\": {\n    \"b\": []\n  },\n  \"c\": {}\n}");
  EXPECT_EQ(R("{{ 'é€😀\\u0001\\n' | tojson }}|{{ 'é😀' | tojson(ensure_ascii=true) }}"),
            "\"é€😀\\u0001\\n\"|\"\\u00e9\\ud83d\\ude00\"");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ [1, 2] | tojson(separators=(',', ':')) }}|{{ {1: 2} | tojson }}"),
            R"({"a": 2, "b": 1}|[1,2]|{"1": 2})");
  // Key order is the input's (insertion order), not sorted.
  EXPECT_EQ(R("{{ m | tojson }}", R"({"m": {"z": 1, "a": 2}})"), R"({"z": 1, "a": 2})");
  expect_error("{{ u | tojson }}", K::Render, "Object of type Undefined is not JSON serializable");
}

TEST(Jinja, Tests) {
  EXPECT_EQ(R("{{ none is none }}{{ 1 is number }}{{ 1 is integer }}{{ true is integer }}{{ 1.0 is float }}"
              "{{ 'a' is string }}{{ [] is iterable }}{{ {} is mapping }}{{ [] is sequence }}{{ {} is sequence }}"),
            "TrueTrueTrueFalseTrueTrueTrueTrueTrueTrue");
  EXPECT_EQ(R("{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(2) }}{{ 'abc' is lower }}"
              "{{ 'ABC' is upper }}{{ true is true }}{{ false is false }}{{ 1 is boolean }}{{ 2 is in [1, 2] }}"),
            "TrueTrueTrueFalseTrueTrueTrueTrueFalseTrue");
  EXPECT_EQ(R("{{ 1 is eq 1 }}{{ 1 is ne 1 }}{{ 2 is gt 1 }}{{ 2 is ge 3 }}{{ none is sameas none }}{{ x is undefined }}"
              "{{ x is not defined }}{{ range is callable }}{{ 'a' | safe is escaped }}"),
            "TrueFalseTrueFalseTrueTrueTrueTrueTrue");
}

TEST(Jinja, StringMethods) {
  EXPECT_EQ(R("{{ '  a b  c '.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}"),
            "['a', 'b', 'c']|['a', 'b', '', 'c']|['a', 'b,c']|['a,b', 'c']");
  EXPECT_EQ(R("{{ ' x '.strip() }}|{{ 'xyx'.strip('x') }}|{{ '  x'.lstrip() }}|{{ 'x  '.rstrip() }}|{{ 'abc'.startswith('ab') }}"
              "|{{ 'abc'.endswith(('x', 'c')) }}"),
            "x|y|x|x|True|True");
  EXPECT_EQ(R("{{ 'Hello'.upper() }}|{{ 'Hello'.lower() }}|{{ \"they're 1st\".title() }}|{{ 'a-b'.replace('-', '_') }}"
              "|{{ 'banana'.find('an') }}|{{ 'banana'.rfind('an') }}|{{ 'banana'.count('an') }}|{{ 'x'.find('y') }}"),
            "HELLO|hello|They'Re 1St|a_b|1|3|2|-1");
  EXPECT_EQ(R("{{ '-'.join(['a', 'b']) }}|{{ '{} and {}'.format('x', 1) }}|{{ '{0}{1}{0}'.format('a', 'b') }}"
              "|{{ '{n}!'.format(n='N') }}|{{ '{{x}}'.format() }}|{{ '{!r}'.format('q') }}"),
            "a-b|x and 1|aba|N!|{x}|'q'");
  EXPECT_EQ(R("{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ '123'.isdigit() }}|{{ 'ab1'.isalpha() }}|{{ '42'.zfill(5) }}"
              "|{{ 'x'.ljust(3, '.') }}|{{ 'pre_x'.removeprefix('pre_') }}|{{ 'a=b=c'.partition('=') }}"),
            "['a', 'b', 'c']|True|False|00042|x..|x|('a', '=', 'b=c')");
  EXPECT_EQ(R("{{ [1, 2, 1].index(2) }}|{{ [1, 2, 1].count(1) }}"), "1|2");
  // maxsplit: the rest keeps its whitespace on the far side.
  EXPECT_EQ(R("{{ '  a  b  '.split(None, 1) }}|{{ '  a  b  '.rsplit(None, 1) }}"), "['a', 'b  ']|['  a', 'b']");
}

TEST(Jinja, UnicodeAsPythonHasIt) {
  // Full case mappings (ﬀ -> FF, İ -> i + combining dot), titlecase digraphs,
  // the final sigma; Jinja2's title filter lowers each word's rest on its own.
  EXPECT_EQ(R("{{ 'ǆungla'.title() }}|{{ 'İ'.lower() }}|{{ 'ﬀ'.upper() }}|{{ 'ΣΑΣ ΟΔΟΣ'.lower() }}|{{ 'ΣΑΣ ΟΔΟΣ' | title }}"),
            "ǅungla|i\xcc\x87|FF|σας οδος|Σας Οδος");
  // repr() escapes what str.isprintable() rejects: controls, no-break space, format characters, unassigned code points.
  EXPECT_EQ(R("{{ ['\\x85', '\\xa0', '\\u200b', '\\ud7ff', '😀', 'é'] }}"),
            "['\\x85', '\\xa0', '\\u200b', '\\ud7ff', '😀', 'é']");
}

TEST(Jinja, ViewsAndRanges) {
  // dict views and ranges print as Python prints them and are not JSON.
  EXPECT_EQ(R("{{ {'a': 1}.items() }}|{{ {'a': 1}.keys() }}|{{ {'a': 1}.values() }}|[{{ {'a': 1}.keys()[0] }}]"
              "|{{ {'a': 1}.keys() is sequence }}|{{ range(3) }}|{{ range(10)[2:8:2] }}|{{ range(2, 9, 3) | list }}"
              "|{{ range(3)[-1] }}"),
            "dict_items([('a', 1)])|dict_keys(['a'])|dict_values([1])|[]|False|range(0, 3)|range(2, 8, 2)|[2, 5, 8]|2");
  expect_error("{{ {'a': 1}.items() | tojson }}", K::Render, "Object of type dict_items is not JSON serializable");
  expect_error("{{ range(2) | tojson }}", K::Render, "Object of type range is not JSON serializable");
  // attr() reads attributes only: a dict's keys are items.
  EXPECT_EQ(R("[{{ {'role': 'x'} | attr('role') }}]|{{ {'role': 'x'}.role }}"), "[]|x");
}

TEST(Jinja, MarkupEscapesWhatIsAddedToIt) {
  // |safe makes a Markup string: `+` with a plain string escapes the plain one
  // (markupsafe); `~` joins as plain strings.
  EXPECT_EQ(R("{{ 'a' | safe + '<b>' }}|{{ '<b>' + 'a' | safe }}|{{ ('<' | safe) ~ '<' }}|{{ '<x>' | e }}"),
            "a&lt;b&gt;|&lt;b&gt;a|<<|&lt;x&gt;");
}

TEST(Jinja, Globals) {
  RenderOptions opt;
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 6;
  tm.tm_mday = 26;
  tm.tm_hour = 9;
  tm.tm_min = 30;
  tm.tm_wday = 5;
  tm.tm_yday = 207;
  opt.now = tm;
  EXPECT_EQ(R("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M %A') }}", "{}", opt),
            "26 Jul 2024|2024-07-26 09:30 Friday");
  const TemplateError e = E("line 1\n{{ raise_exception('Roles must alternate: ' ~ 2) }}");
  EXPECT_EQ(int(e.kind), int(K::Raised));
  EXPECT_EQ(e.detail, "Roles must alternate: 2");
  EXPECT_EQ(e.line, 2);
  EXPECT_EQ(std::string(e.what()), "chat template: Roles must alternate: 2 (line 2)");
}

TEST(Jinja, SandboxAndTypeErrors) {
  // transformers' sandbox forbids changing lists and dicts.
  expect_error("{{ [1].append(2) }}", K::Render, "access to attribute 'append' of 'list' object is unsafe.");
  expect_error("{{ {'a': 1}.pop('a') }}", K::Render, "access to attribute 'pop' of 'dict' object is unsafe.");
  expect_error("{{ 1 + 'a' }}", K::Render, "unsupported operand type(s) for +: 'int' and 'str'");
  expect_error("{{ 'a' + 1 }}", K::Render, "can only concatenate str (not \"int\") to str");
  expect_error("{{ 'a' < 1 }}", K::Render, "'<' not supported between instances of 'str' and 'int'");
  expect_error("{{ 1 / 0 }}", K::Render, "division by zero");
  expect_error("{{ ' '.join(['a', 1]) }}", K::Render, "sequence item 1: expected str instance, int found");
  expect_error("{{ range(1000000) | length }}", K::Render, "Range too big");
  expect_error("\n\n{{ 5() }}", K::Render, "'int' object is not callable", 3);
}

TEST(Jinja, SyntaxErrorsNameTheLine) {
  expect_error("a\n{% if x %}\nb", K::Syntax, "the 'if' tag is not closed (expected 'elif' or 'else' or 'endif')", 2);
  expect_error("{% endif %}", K::Syntax, "unknown tag 'endif'", 1);
  expect_error("x\ny\n{{ 'unterminated }}", K::Syntax, "unexpected char", 3);
  expect_error("{{ foo( }}", K::Syntax, "unexpected '}', expected ')'", 1);
  expect_error("{% for %}{% endfor %}", K::Syntax, "expected an expression", 1);
  expect_error("{{ 1 +* 2 }}", K::Syntax, "unexpected '*'", 1);
  expect_error("{% break %}", K::Syntax, "'break' outside a loop", 1);
  expect_error("{# never closed", K::Syntax, "missing end of comment tag", 1);
  expect_error("{{ 1 is defined is defined }}", K::Syntax, "you cannot chain multiple tests with is");
}

TEST(Jinja, UnsupportedConstructsAreRefusedByName) {
  expect_error("\n{% include 'x.html' %}", K::Unsupported, "chat template: the 'include' tag not supported (line 2)");
  expect_error("{% for x in y recursive %}{% endfor %}", K::Unsupported, "recursive for loops not supported");
  expect_error("{% macro m() %}{{ caller() }}{% endmacro %}", K::Unsupported, "'caller' (call blocks) not supported");
  expect_error("{% call m() %}{% endcall %}", K::Unsupported, "the 'call' tag not supported");
  expect_error("{{ x | from_json }}", K::Unsupported, "the filter 'from_json' not supported (line 1)");
  expect_error("{{ 1 is frobnicated }}", K::Unsupported, "the test 'frobnicated' not supported");
  expect_error("{{ '%s' % 'x' }}", K::Unsupported, "printf-style string formatting");
  expect_error("{{ [1] | map('upper') }}", K::Unsupported, "printing a generator");
  expect_error("{{ 9223372036854775807 + 1 }}", K::Unsupported, "integers beyond 64 bits not supported");
  expect_error("{{ 'x'.encode() }}", K::Unsupported, "the string method encode() not supported");
  expect_error("{{ '{:>5}'.format(1) }}", K::Unsupported, "format specifications in str.format()");
  expect_error("{{ lipsum() }}", K::Unsupported, "the global lipsum() not supported");
}

TEST(Jinja, LimitsStopRunawayTemplates) {
  expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", K::Limit, "macro calls nest deeper than 256 levels");
  RenderOptions small;
  small.max_output_bytes = 1000;
  EXPECT_EQ(int(E("{% for i in range(100) %}0123456789abcdef{% endfor %}", "{}", small).kind), int(K::Limit));
  EXPECT_EQ(int(E("{{ 'x' * 5000 }}", "{}", small).kind), int(K::Limit));
  RenderOptions few;
  few.max_steps = 10000;
  // Nested loops of 10^15 iterations stop at the step budget instead of hanging.
  EXPECT_EQ(int(E("{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
                  "{% endfor %}{% endfor %}{% endfor %}",
                  "{}", few)
                    .kind),
            int(K::Limit));
  // Sizes asked for are checked before anything is built.
  for (const char* big : {"{{ ' ' * 10**12 }}", "{{ [1] * 10**9 }}", "{{ 'x' | center(10**12) }}", "{{ 'x'.zfill(10**12) }}",
                          "{{ 'a\nb' | indent(10**12) }}", "{{ ('a' * 1000) | replace('a', 'b' * 100000) }}",
                          "{{ ('b' * 100000) | tojson(indent=10**12) }}",
                          "{{ range(1000) | join('s' * 100000) }}"})
    EXPECT_EQ(int(E(big, "{}", small).kind), int(K::Limit)) << big;
  EXPECT_EQ(R("[{{ '' * 10**18 }}{{ [] * 10**18 }}]"), "[[]]");
  // Values share their text: 100000 copies of a 10 MB string cost nothing.
  EXPECT_EQ(R("{% set s = 'x' * 10000000 %}{% set ns = namespace() %}{% for i in range(100000) %}{% set ns.t = s %}"
              "{% set l = [s, s] %}{% endfor %}{{ ns.t | length }}"),
            "10000000");
  // Parsing: nesting past 200 levels is an error, not a stack overflow.
  expect_error("{{ " + std::string(5000, '[') + std::string(5000, ']') + " }}", K::Syntax, "nests deeper than 200 levels");
  // A chain of 50000 namespaces renders and frees without recursing per level;
  // printing it, or a namespace holding itself, stops at the nesting limit.
  const std::string chain =
      "{% set ns = namespace(cur=none) %}{% for i in range(50000) %}{% set n = namespace() %}{% set n.x = ns.cur %}"
      "{% set ns.cur = n %}{% endfor %}";
  EXPECT_EQ(R(chain + "ok"), "ok");
  expect_error(chain + "{{ ns.cur }}", K::Limit, "values nest deeper than 512 levels");
  expect_error("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", K::Limit, "values nest deeper than 512 levels");
  // Values holding the namespace or loop they are stored in (reference cycles)
  // render as in Jinja2; tests/fuzz/crashes/chat_template-namespace-cycle-leak
  // runs them under LeakSanitizer.
  EXPECT_EQ(R("{% set ns = namespace(t=[]) %}{% set ns.t = ns, ns.t + [1] %}{{ ns.t[1] }}"
              "{% set a = namespace() %}{% set b = namespace(x=[{'k': (1, a)}]) %}{% set a.y = [b] %}"
              "{{ a.y[0].x[0].k[1].y[0].x[0].k[0] }}"
              "{% for x in [1, 1] %}{{ loop.changed(loop) }}{% set ns.l = loop %}{{ loop.changed([ns]) }}{% endfor %}|"
              "{% for x in [1, 1] %}{{ loop.changed(loop) }}{% endfor %}"),
            "[1]1TrueTrueTrueTrue|TrueFalse");  // python3-jinja2's output
  std::string deep_ifs;
  for (int i = 0; i < 300; i++) deep_ifs += "{% if true %}";
  expect_error(deep_ifs, K::Syntax, "nests deeper than 200 levels");
}

// Random byte edits of a real template either render or fail with a
// TemplateError; nothing else (no crash, no other exception, no hang).
TEST(Jinja, MutatedTemplatesFailCleanly) {
  const std::string base =
      "{%- set ns = namespace(sys='') -%}{% for m in messages %}{% if m.role == 'system' %}{% set ns.sys = m.content | trim %}"
      "{% elif m.role == 'user' %}{{ bos_token ~ '[INST] ' ~ (ns.sys ~ '\\n\\n' if loop.index0 == 1 and ns.sys else '') ~ "
      "m['content'] ~ ' [/INST]' }}{% else %}{{ ' ' + m.content.strip() + eos_token }}{% endif %}{% endfor %}"
      "{% macro f(x, y=2) %}{{ x | tojson(indent=y) }}{% endmacro %}{{ f({'a': [1, 2.5, none]}) }}";
  const Json ctx = Json::parse(R"({"messages": [{"role": "system", "content": " s "}, {"role": "user", "content": "u"},
    {"role": "assistant", "content": "a"}], "bos_token": "<s>", "eos_token": "</s>"})");
  ASSERT_EQ(Template(base).render(ctx), "<s>[INST] s\n\nu [/INST] a</s>{\n  \"a\": [\n    1,\n    2.5,\n    null\n  ]\n}");
  std::mt19937 rng(7);
  const std::string alphabet = "{}%#-+()[]'\"|.,:=~*/ \nabcdefis0123456789";
  RenderOptions opt;
  opt.max_steps = 100000;
  int rendered = 0;
  for (int trial = 0; trial < 3000; trial++) {
    std::string t = base;
    const int edits = 1 + int(rng() % 4);
    for (int k = 0; k < edits; k++) {
      const size_t pos = rng() % t.size();
      switch (rng() % 3) {
        case 0: t[pos] = alphabet[rng() % alphabet.size()]; break;
        case 1: t.erase(pos, 1 + rng() % 3); break;
        default: t.insert(pos, 1, alphabet[rng() % alphabet.size()]);
      }
    }
    try {
      Template(t).render(ctx, opt);
      rendered++;
    } catch (const TemplateError&) {
    }
  }
  EXPECT_GT(rendered, 100);  // the edits leave many templates valid, so both paths ran
}

}  // namespace
}  // namespace lmpress::jinja
