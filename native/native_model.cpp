// The NativeModel JS class (configure, run, generate, site-graph info, dispose) and loadModel,
// with the workers that load a model and run a request off the JS thread.
#include "generate.h"
#include "init.h"
#include "loader.h"
#include "scan.h"
#include "worker.h"

namespace ts {
namespace {

// A JS NativeModel owning `s` (on the JS thread).
Napi::Object newModelObject(Napi::Env env, std::shared_ptr<ModelState> s) {
  addonData(env).pendingModel = std::move(s);
  auto obj = addonData(env).modelCtor.New({});
  addonData(env).pendingModel.reset();  // already taken by the constructor, unless it never ran
  return obj;
}

class LoadWorker : public Worker {
 public:
  LoadWorker(Napi::Env env, std::string path, std::string device, std::string dtype, std::string step, Napi::Function onProgress)
      : Worker(env), path_(std::move(path)), device_(std::move(device)), dtype_(std::move(dtype)), step_(std::move(step)),
        onProgress_(env, onProgress, "torchsight-load") {}
  void work() override {
    LoadProgress progress;
    if (onProgress_)
      progress = [this](const char* phase, uint64_t done, uint64_t total) {
        struct Event { const char* phase; double done, total; };  // phase: a string literal
        onProgress_.post(new Event{phase, (double)done, (double)total}, [](Napi::Env env, Napi::Function cb, Event* e) {
          Event v = *e;
          delete e;
          cb.Call({Napi::String::New(env, v.phase), Napi::Number::New(env, v.done), Napi::Number::New(env, v.total)});
        });
      };
    state_ = loadModelState(path_, device_, dtype_, step_, progress);
  }
  Napi::Value result(Napi::Env env) override { return newModelObject(env, std::move(state_)); }

 private:
  std::string path_, device_, dtype_, step_;
  JsCallback onProgress_;
  std::shared_ptr<ModelState> state_;
};

class RunWorker : public Worker {
 public:
  RunWorker(Napi::Env env, std::shared_ptr<ModelState> m, Request r, Napi::Value keep)
      : Worker(env), m_(std::move(m)), req_(std::move(r)) {
    // keeps the request's JS buffers (the cancel flag) alive while native code reads them
    if (keep.IsObject()) keep_ = Napi::Persistent(keep.As<Napi::Object>());
  }
  void work() override {
    std::lock_guard<std::mutex> lock(m_->mu);
    c10::InferenceMode guard;  // thread-local: set on this worker thread
    Interpreter interp(*m_, req_);
    interp.run();
    saved_ = interp.saved();
    if (req_.returnLogits) logits_ = interp.logits;
    fired_ = std::move(interp.firedSites);
    builds_ = std::move(interp.builds);
  }
  Napi::Value result(Napi::Env env) override {
    auto out = Napi::Object::New(env);
    out.Set(key(env, Key::saved), savedToJs(env, saved_));
    if (logits_.defined()) out.Set(key(env, Key::logits), wrapTensor(env, logits_));
    if (req_.recordSites) {
      auto fired = Napi::Array::New(env, fired_.size());
      for (size_t i = 0; i < fired_.size(); ++i) fired.Set((uint32_t)i, fired_[i]);
      out.Set(key(env, Key::fired), fired);
    }
    saved_.clear();
    req_ = Request();  // drop the inputs and intermediate values now
    queueSiteGraphs(env, builds_);
    return out;
  }

 private:
  std::shared_ptr<ModelState> m_;
  Request req_;
  std::vector<std::pair<int, c10::IValue>> saved_;
  at::Tensor logits_;
  std::vector<std::string> fired_;
  std::vector<SiteGraphBuild> builds_;
  Napi::ObjectReference keep_;
};

}  // namespace

static Napi::Value queueLoad(Napi::Env env, std::string path, std::string device, std::string dtype, std::string stepPath,
                      Napi::Function onProgress) {
  auto* w = new LoadWorker(env, std::move(path), std::move(device), std::move(dtype), std::move(stepPath), onProgress);
  auto p = w->promise();
  w->Queue();
  return p;
}

static Napi::Value queueRun(Napi::Env env, std::shared_ptr<ModelState> model, Request req, Napi::Value keep) {
  auto* w = new RunWorker(env, std::move(model), std::move(req), keep);
  auto p = w->promise();
  w->Queue();
  return p;
}

// ---- the JS class ---------------------------------------------------------------------

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("sites", &ModelWrap::Sites), InstanceMethod("ops", &ModelWrap::Ops), InstanceMethod("configure", &ModelWrap::Configure),
                        InstanceMethod("run", &ModelWrap::Run), InstanceMethod("scan", &ModelWrap::Scan),
                        InstanceMethod("generate", &ModelWrap::Generate),
                        InstanceMethod("dispose", &ModelWrap::Dispose), InstanceMethod("siteGraphs", &ModelWrap::SiteGraphsInfo),
                        InstanceAccessor("hasCache", &ModelWrap::HasCache, nullptr),
                        InstanceAccessor("device", &ModelWrap::Device, nullptr),
                        InstanceAccessor("dtype", &ModelWrap::Dtype, nullptr)});
  }
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    state_ = std::move(addonData(info.Env()).pendingModel);
    if (!state_) {
      Napi::TypeError::New(info.Env(), "NativeModel cannot be constructed directly; use loadModel")
          .ThrowAsJavaScriptException();
      return;
    }
  }

 private:
  ModelState& state() {
    if (!state_) throw UserError("this model was disposed");
    return *state_;
  }
  Napi::Value Sites(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto& s = state();  // the export's hook sites (op sites are listed by ops())
      auto arr = Napi::Array::New(info.Env(), s.hookSites);
      for (size_t i = 0; i < s.hookSites; ++i) arr.Set((uint32_t)i, s.siteNames[i]);
      return arr;
    });
  }
  // ops(): model.pt's operations (.source), in graph order, as
  // [{module, name, kind, output: site, inputs: [site | null], shapes: [[...], [...]]}]
  Napi::Value Ops(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      auto& s = state();
      auto arr = Napi::Array::New(env, s.forward.ops.size());
      for (size_t i = 0; i < s.forward.ops.size(); ++i) {
        const OpSite& op = s.forward.ops[i];
        auto o = Napi::Object::New(env);
        o.Set("module", op.module);
        o.Set("name", op.name);
        o.Set("kind", op.kind);
        o.Set("output", s.siteNames.at(op.output));
        auto inputs = Napi::Array::New(env, op.inputs.size());
        for (size_t k = 0; k < op.inputs.size(); ++k)
          inputs.Set((uint32_t)k, op.inputs[k] >= 0 ? Napi::Value(Napi::String::New(env, s.siteNames.at(op.inputs[k]))) : env.Null());
        o.Set("inputs", inputs);
        auto shapes = Napi::Array::New(env, op.shapes.size());
        for (size_t k = 0; k < op.shapes.size(); ++k) {
          auto dims = Napi::Array::New(env, op.shapes[k].size());
          for (size_t d = 0; d < op.shapes[k].size(); ++d) dims.Set((uint32_t)d, (double)op.shapes[k][d]);
          shapes.Set((uint32_t)k, dims);
        }
        o.Set("shapes", shapes);
        arr.Set((uint32_t)i, o);
      }
      return arr;
    });
  }
  // configure({vocabSize, maxPositions, apply: {path: {kind, eps?, fn?}}}) from the manifest.
  Napi::Value Configure(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto& s = state();
      if (info.Length() < 1 || !info[0].IsObject()) throw UserError("configure(options)");
      auto o = info[0].As<Napi::Object>();
      std::lock_guard<std::mutex> lock(s.mu);
      if (o.Get("vocabSize").IsNumber()) s.vocabSize = o.Get("vocabSize").As<Napi::Number>().Int64Value();
      if (o.Get("maxPositions").IsNumber()) s.maxPositions = o.Get("maxPositions").As<Napi::Number>().Int64Value();
      auto cache = o.Get("cache");
      if (cache.IsObject()) {
        auto c = cache.As<Napi::Object>();
        auto dim = [&](const char* k) -> int64_t {
          auto v = c.Get(k);
          if (!v.IsNumber() || v.As<Napi::Number>().Int64Value() < 1 || v.As<Napi::Number>().Int64Value() > (1 << 20))
            throw UserError(std::string("configure: cache.") + k + " must be a positive integer");
          return v.As<Napi::Number>().Int64Value();
        };
        s.cacheLayers = dim("layers");
        s.cacheHeads = dim("kvHeads");
        s.cacheHeadDim = dim("headDim");
      }
      auto apply = o.Get("apply");
      if (apply.IsObject()) {
        auto ao = apply.As<Napi::Object>();
        auto keys = ao.GetPropertyNames();
        for (uint32_t i = 0; i < keys.Length(); ++i) {
          std::string path = keys.Get(i).As<Napi::String>().Utf8Value();
          auto r = ao.Get(path);
          if (!r.IsObject()) continue;
          auto ro = r.As<Napi::Object>();
          ApplyRule rule;
          if (!ro.Get("kind").IsString()) continue;
          rule.kind = ro.Get("kind").As<Napi::String>().Utf8Value();
          if (rule.kind == "none") continue;
          if (ro.Get("eps").IsNumber()) rule.eps = ro.Get("eps").As<Napi::Number>().DoubleValue();
          if (ro.Get("fn").IsString()) rule.fn = ro.Get("fn").As<Napi::String>().Utf8Value();
          s.submodule(path);  // must exist
          s.applyRules[path] = rule;
        }
      }
      return info.Env().Undefined();
    });
  }
  // run(request): always a promise (guardedAsync).
  Napi::Value Run(const Napi::CallbackInfo& info) {
    return guardedAsync(info.Env(), [&]() -> Napi::Value {
      auto& s = state();
      if (info.Length() < 1 || !info[0].IsObject()) throw UserError("run(request): request must be an object");
      return queueRun(info.Env(), state_, parseRequest(info[0].As<Napi::Object>(), s), info[0]);
    });
  }
  // scan(request): run() for shapes and dtypes only, on the model's meta copy (scan.cpp).
  Napi::Value Scan(const Napi::CallbackInfo& info) {
    return guardedAsync(info.Env(), [&]() -> Napi::Value {
      auto& s = state();
      if (info.Length() < 1 || !info[0].IsObject()) throw UserError("scan(request): request must be an object");
      return queueScan(info.Env(), state_, parseRequest(info[0].As<Napi::Object>(), s), info[0]);
    });
  }
  // generate(request, options, onStep?): request as for run() with one trace (the prompt).
  Napi::Value Generate(const Napi::CallbackInfo& info) {
    return guardedAsync(info.Env(), [&]() -> Napi::Value {
      auto& s = state();
      if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject())
        throw UserError("generate(request, options, onStep?)");
      Request req = parseRequest(info[0].As<Napi::Object>(), s);
      if (req.traces.size() != 1) throw UserError("generate: the request must hold exactly one trace (the prompt)");
      GenOptions o = parseGenOptions(info[1].As<Napi::Object>());
      if (s.hasStep && (s.cacheLayers == 0)) o.useCache = false;
      Napi::Function onStep;
      if (info.Length() > 2 && info[2].IsFunction()) onStep = info[2].As<Napi::Function>();
      return queueGenerate(info.Env(), state_, std::move(req), o, onStep, info[0]);
    });
  }
  // siteGraphs(): the site graphs built or building, as [{forward: 'model' | 'step', sites, ready, uses, siteOps}]
  Napi::Value SiteGraphsInfo(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      auto& s = state();
      auto arr = Napi::Array::New(env);
      if (!s.siteGraphs) return arr;
      for (const auto& g : s.siteGraphs->info()) {
        auto o = Napi::Object::New(env);
        o.Set("forward", g.key[0] == 's' ? "step" : "model");
        auto sites = Napi::Array::New(env);
        for (size_t i = 1; i + sizeof(int32_t) <= g.key.size(); i += sizeof(int32_t)) {
          int32_t id;
          std::memcpy(&id, g.key.data() + i, sizeof id);
          sites.Set(sites.Length(), s.siteNames.at(id));
        }
        o.Set("sites", sites);
        o.Set("ready", g.ready);
        o.Set("uses", (double)g.uses);
        o.Set("siteOps", g.siteOps);  // site calls in the built graph (0 while building)
        arr.Set(arr.Length(), o);
      }
      return arr;
    });
  }
  Napi::Value HasCache(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), state().hasStep); });
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_.reset();  // a running forward keeps its own reference until it ends
    return info.Env().Undefined();
  }
  Napi::Value Device(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value { return Napi::String::New(info.Env(), deviceName(state().device)); });
  }
  Napi::Value Dtype(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value { return Napi::String::New(info.Env(), dtypeName(state().dtype)); });
  }
  std::shared_ptr<ModelState> state_;
};

static Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString())
      throw UserError("loadModel(path: string, device: string, dtype: string, stepPath?: string, onProgress?: function)");
    std::string step = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
    Napi::Function onProgress = info.Length() > 4 && info[4].IsFunction() ? info[4].As<Napi::Function>() : Napi::Function();
    return queueLoad(info.Env(), info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(),
                     info[2].As<Napi::String>().Utf8Value(), step, onProgress);
  });
}

void initModel(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = ModelWrap::Init(env);
  addonData(env).modelCtor = Napi::Persistent(cls);
  exports.Set("NativeModel", cls);
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
}

}  // namespace ts
