// The consent page's only script: close the pop-up once the operation is over.
document.addEventListener("DOMContentLoaded", () => {
  const result = document.querySelector(".result[data-outcome]");
  if (result && ["done", "cancelled"].includes(result.dataset.outcome)) {
    setTimeout(() => window.close(), 1500);
  }
});
