// config.h — a config struct described once.
//
// A config lists its fields in one static function,
//
//   struct OptimConfig {
//     std::string name = "adamw";
//     double lr = 1e-3;
//     template <class Self, class Visit>
//     static void fields(Self& self, Visit&& visit) {
//       visit("name", self.name, "sgd, adam or adamw");
//       visit("lr", self.lr, "peak learning rate");
//     }
//   };
//
// and everything that needs the list walks it: its JSON (to_json), reading JSON back
// (from_json: missing keys keep their defaults, an unknown key or a value of the wrong type
// is an error naming the key and listing the valid ones), and the command line's
// `--set KEY=VALUE` (set_field, keys with their help for --help). A field that is itself a
// config (it has fields()) nests: its keys are written "loop.optim.lr".
// Validation stays with each config (`validate()`), since what is valid is the config's own
// business.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/error.h"

namespace copper::config {

template <class C>
concept Described = requires(C& c) { C::fields(c, [](const char*, auto&, const char*) {}); };

template <class C>
nlohmann::json to_json(const C& c) {
  nlohmann::json js = nlohmann::json::object();
  C::fields(c, [&](const char* key, const auto& value, const char*) {
    if constexpr (Described<std::remove_cvref_t<decltype(value)>>)
      js[key] = to_json(value);
    else
      js[key] = value;
  });
  return js;
}

// The keys of C, comma-separated (for error messages).
template <class C>
std::string key_list() {
  C probe{};
  std::string names;
  C::fields(probe, [&](const char* key, auto&, const char*) { names += (names.empty() ? "" : ", ") + std::string(key); });
  return names;
}

// Reads the keys of `js` into `c` (others keep their values). `op` names the config in errors.
template <class C>
void from_json(C& c, const nlohmann::json& js, const char* op) {
  COPPER_CHECK(js.is_object(), op, "expected a JSON object, got {}", js.dump());
  for (auto it = js.begin(); it != js.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& value = it.value();
    bool found = false;
    C::fields(c, [&](const char* k, auto& field, const char*) {
      if (key != k) return;
      found = true;
      using T = std::remove_cvref_t<decltype(field)>;
      if constexpr (Described<T>) {
        from_json(field, value, op);
      } else {
        try {
          field = value.template get<T>();
        } catch (const nlohmann::json::exception&) {
          COPPER_THROW(op, "'{}' has the wrong type: {}. HINT: expected {}", key, value.dump(),
                       std::is_same_v<T, std::string> ? "a string"
                       : std::is_same_v<T, bool>      ? "true or false"
                       : std::is_integral_v<T>        ? "an integer"
                                                      : "a number");
        }
      }
    });
    COPPER_CHECK(found, op, "unknown key '{}'. HINT: valid keys are {}", key, key_list<C>());
  }
}

// One "KEY=VALUE" of the command line: KEY a dotted path ("model.npos"), VALUE parsed as JSON
// (numbers, true/false) or, failing that, taken as a string. Throws naming the key on an
// unknown key or a value of the wrong type.
template <class C>
void set_field(C& c, const std::string& assignment, const char* op) {
  const auto eq = assignment.find('=');
  COPPER_CHECK(eq != std::string::npos && eq > 0, op, "'{}' is not KEY=VALUE. HINT: e.g. --set model.npos=128",
               assignment);
  const std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, false);
  if (value.is_discarded() || value.is_object() || value.is_array()) value = text;
  // "a.b.c" = v  ->  {"a": {"b": {"c": v}}}, read with from_json
  nlohmann::json js = value;
  size_t end = path.size();
  while (true) {
    const size_t dot = path.rfind('.', end - 1);
    const std::string key = path.substr(dot == std::string::npos ? 0 : dot + 1, end - (dot == std::string::npos ? 0 : dot + 1));
    js = nlohmann::json{{key, js}};
    if (dot == std::string::npos) break;
    end = dot;
  }
  from_json(c, js, op);
}

// Every settable key of C with its help text and current value, nested keys dotted.
template <class C>
std::vector<std::pair<std::string, std::string>> describe(const C& c, const std::string& prefix = "") {
  std::vector<std::pair<std::string, std::string>> out;
  C::fields(c, [&](const char* key, const auto& value, const char* help) {
    using T = std::remove_cvref_t<decltype(value)>;
    if constexpr (Described<T>) {
      auto sub = describe(value, prefix + key + ".");
      out.insert(out.end(), sub.begin(), sub.end());
    } else {
      out.emplace_back(prefix + key, std::string(help) + " (now " + nlohmann::json(value).dump() + ")");
    }
  });
  return out;
}

}  // namespace copper::config
