#include "guarded.h"

#include <cctype>
#include <map>

#include "core/error.h"
#include "model/model.h"

namespace lmpress::cli {

namespace {

struct Decl {
  std::string what;
  PathRole role;
  OutputKind kind;
  std::function<std::vector<std::string>()> paths;
  std::string marker = kModelDirMarker;
};

struct CommandPaths {
  std::vector<Decl> decls;
  bool has_body = false;
};

std::map<const CLI::App*, CommandPaths>& registry() {
  static std::map<const CLI::App*, CommandPaths> r;
  return r;
}

// "-f,--file" -> "--file"; positionals as in the usage line: "model" -> "MODEL".
std::string option_label(const std::string& flags) {
  const auto comma = flags.find_last_of(',');
  std::string label = comma == std::string::npos ? flags : flags.substr(comma + 1);
  if (!label.starts_with("-"))
    for (char& c : label) c = char(std::toupper(static_cast<unsigned char>(c)));
  return label;
}

}  // namespace

CLI::Option* add_path_option(CLI::App* cmd, const std::string& flags, std::string& var, const std::string& desc,
                             PathRole role, OutputKind kind, const std::string& marker) {
  std::string* p = &var;
  registry()[cmd].decls.push_back({option_label(flags), role, kind, [p] {
                                     return p->empty() ? std::vector<std::string>{} : std::vector<std::string>{*p};
                                   }, marker});
  return cmd->add_option(flags, var, desc);
}

CLI::Option* add_path_option(CLI::App* cmd, const std::string& flags, std::vector<std::string>& var,
                             const std::string& desc, PathRole role) {
  std::vector<std::string>* p = &var;
  registry()[cmd].decls.push_back({option_label(flags), role, OutputKind::File, [p] { return *p; }});
  return cmd->add_option(flags, var, desc);
}

void add_derived_paths(CLI::App* cmd, const std::string& what, PathRole role,
                       std::function<std::vector<std::string>()> paths, OutputKind kind, const std::string& marker) {
  registry()[cmd].decls.push_back({what, role, kind, std::move(paths), marker});
}

PathGuard command_guard(const CLI::App* cmd) {
  PathGuard g;
  const auto it = registry().find(cmd);
  if (it == registry().end()) return g;
  for (const Decl& d : it->second.decls)
    for (const std::string& p : d.paths()) {
      if (d.role == PathRole::Output)
        g.output(d.what, p, d.kind, d.marker);
      else if (d.role == PathRole::Input)
        g.input(d.what, p);
      else
        for (const std::string& f : model_input_paths(p)) g.input(d.what, f);
    }
  return g;
}

void on_run(CLI::App* cmd, std::function<void()> body) {
  registry()[cmd].has_body = true;
  cmd->callback([cmd, body = std::move(body)] {
    command_guard(cmd).check();
    body();
  });
}

void check_every_command_guarded(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    const auto it = registry().find(sub);
    if (it == registry().end() || !it->second.has_body)
      fail("internal: command {} has no guarded body (use on_run)", sub->get_name());
  }
}

}  // namespace lmpress::cli
