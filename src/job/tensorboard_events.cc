#include "job/tensorboard_events.h"

#include "tensorboard/compat/proto/event.pb.h"

namespace xltune::tensorboard_events {
namespace {

tensorboard::Event event_at(double wall_time, int64_t step) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  return event;
}

}  // namespace

std::string file_version(double wall_time) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_file_version("brain.Event:2");
  return event.SerializeAsString();
}

std::string session_start(double wall_time, int64_t step) {
  tensorboard::Event event = event_at(wall_time, step);
  event.mutable_session_log()->set_status(tensorboard::SessionLog::START);
  return event.SerializeAsString();
}

std::string scalars(double wall_time, int64_t step, const std::vector<std::pair<std::string, float>>& values) {
  tensorboard::Event event = event_at(wall_time, step);
  for (const auto& [tag, value] : values) {
    tensorboard::Summary::Value* v = event.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(value);
  }
  return event.SerializeAsString();
}

std::string image(double wall_time, int64_t step, const std::string& tag, const std::string& png, int height,
                  int width) {
  tensorboard::Event event = event_at(wall_time, step);
  tensorboard::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  tensorboard::Summary::Image* image = v->mutable_image();
  image->set_height(height);
  image->set_width(width);
  image->set_colorspace(3);  // RGB
  image->set_encoded_image_string(png);
  return event.SerializeAsString();
}

}  // namespace xltune::tensorboard_events
