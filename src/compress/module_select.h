// Which block linears a compression step works on, chosen by module names
// (core/module_match.h) as recipes and checkpoint configs name them.
#pragma once
#include <set>
#include <string>

#include "core/module_match.h"
#include "model/model.h"

namespace lmpress {

// The Hugging Face module of a block linear of a model of config c
// (blk.3.ffn_down.weight -> model.layers.3.mlp.down_proj); empty if none.
std::string linear_module(const std::string& weight, const ModelConfig& c);

// The block linears (canonical weight names, experts included, routers not)
// that s selects. Fails naming the list and the entry when a target selects
// none of them, or an ignore entry names no module of the model (a typo
// would otherwise compress what it meant to leave out); ignoring lm_head is
// accepted (these steps never compress the output matrix).
std::set<std::string> selected_linears(const Model& m, const ModuleSelector& s);

}  // namespace lmpress
